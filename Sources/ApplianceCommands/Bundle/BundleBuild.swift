import ApplianceBundle
import ApplianceModel
import ArgumentParser
import Foundation

struct BundleBuild: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "build", abstract: "Assemble and sign a bundle from a spec.",
        discussion: Format.help(
            """
            Sources in the spec: local files and directories, .deb files, Debian packages by name and version
            (fetched with apt-get download and cached), OCI image layouts, images pulled from registries
            (`image: {ref: REGISTRY/REPO:TAG, platform: linux/amd64}`), Helm chart archives or directories.
            Images are stored as their own blobs (manifest, config, layers) under their upstream digests.
            The output is written under a temporary name and renamed when complete.

            --check validates the spec without fetching anything. --lock FILE records what the build resolved
            (image digests, package versions and digests, the build time); --locked FILE rebuilds exactly that,
            byte for byte. Registry credentials come from a docker-style config.json (--registry-auth, else
            $REGISTRY_AUTH_FILE, $DOCKER_CONFIG/config.json, ~/.docker/config.json) or from
            APPLIANCE_REGISTRY_USER, APPLIANCE_REGISTRY_PASSWORD and APPLIANCE_REGISTRY_HOST; they are never logged.
            """))

    @OptionGroup var global: GlobalOptions

    @Option(name: .customShort("f"), help: "The bundle spec (bundles/NAME.yaml).")
    var spec: String

    @Option(name: .shortAndLong, help: "Where to write the bundle (.tar).")
    var output: String?

    @Option(help: "Private key to sign with (from `bundle keygen`).")
    var key: String?

    @Flag(help: "Build without a signature (verifying it then needs --allow-unsigned).")
    var unsigned = false

    @Flag(help: "Validate the spec without fetching or writing anything.")
    var check = false

    @Option(help: "Write the lock file of this build (image digests, package versions and digests).")
    var lock: String?

    @Option(help: "Build exactly what this lock file pins; fails when a pinned digest or version is gone.")
    var locked: String?

    @Option(help: "Extra CA certificates (PEM) for private registries.")
    var registryCA: String?

    @Option(help: "Registry credentials: a docker-style config.json.")
    var registryAuth: String?

    @Option(help: "Image blobs downloaded at once.")
    var parallel = 6

    func validate() throws {
        if check { return }
        if output == nil { throw ValidationError("pass --output FILE.tar (or --check to only validate the spec)") }
        if key == nil && !unsigned {
            throw ValidationError("pass --key KEY to sign the bundle, or --unsigned to build without a signature")
        }
        if let lock, let locked, lock == locked {
            throw ValidationError("--lock and --locked name the same file; a locked build does not rewrite its lock")
        }
        if parallel < 1 || parallel > 64 { throw ValidationError("--parallel must be between 1 and 64") }
    }

    func run() async throws {
        let ctx = CommandContext.make(global, command: "bundle build")
        let parsed = try BundleSpec.load(path: spec)
        if check {
            try runCheck(parsed, ctx: ctx)
            return
        }
        guard let out = output else { return }
        let signingKey = try key.map { try Ed25519Key.load(path: $0) }
        if let signingKey, !signingKey.hasPrivateKey {
            throw BundleError.key(path: key ?? "", reason: "this is a public key; signing needs the private key")
        }
        let lockFile = try locked.map { try BundleLock.load(path: $0) }
        let state = StateDirectory.path()
        let builder = BundleBuilder(
            spec: parsed, signingKey: signingKey, debCacheDirectory: state + "/cache/debs", logger: ctx.logger)
        let credentials = try RegistryCredentials.load(
            file: registryAuth, environment: ProcessInfo.processInfo.environment)
        let registry = RegistryOptions(
            caFile: registryCA, credentials: credentials, parallelDownloads: parallel,
            cacheDirectory: state + "/cache/images")
        let start = Date()
        let display = PullDisplay(enabled: ctx.isTerminal && !ctx.logger.logLevel.isQuiet)
        let (result, resolved) = try await builder.build(
            output: out, registry: registry, locked: lockFile, progress: { display.update($0) })
        display.finish()
        if let lock {
            do {
                try Data(resolved.yaml().utf8).write(to: URL(fileURLWithPath: lock), options: .atomic)
            } catch {
                throw BundleError.io(path: lock, reason: error.localizedDescription)
            }
        }
        let m = result.manifest
        ctx.output.print(
            "built \(result.path): \(m.name) \(m.version), \(m.components.count) components, "
                + "\(m.allArtifacts.count) artifacts (\(m.images.count) images), \(Format.bytes(result.bytes)) in \(Format.seconds(Date().timeIntervalSince(start)))"
        )
        ctx.output.print(result.signedBy.map { "signed by \($0)" } ?? "unsigned")
        if let lock { ctx.output.print("lock file written to \(lock)") }
        if let locked { ctx.output.print("built as locked by \(locked)") }
    }

    private func runCheck(_ parsed: BundleSpec, ctx: CommandContext) throws {
        let findings = SpecCheck.run(parsed)
        for f in findings { ctx.output.print("\(f.severity.rawValue): \(f)") }
        let errors = findings.filter { $0.severity == .error }
        if !errors.isEmpty {
            throw DiagnosticsError(
                subject: "bundle spec \(spec)", diagnostics: errors.map { Diagnostic($0.message, at: $0.location) })
        }
        let artifacts = parsed.components.reduce(0) { $0 + $1.artifacts.count }
        ctx.output.print(
            "\(spec): ok (\(parsed.components.count) components, \(artifacts) artifacts, "
                + "\(parsed.registryImages.count) registry images, \(findings.count) warnings); nothing was fetched")
    }
}

/// The pull progress line on a TTY: images resolved, blobs and bytes, rate, ETA (like staging's).
final class PullDisplay: @unchecked Sendable {  // mutable state is behind `lock`
    private let enabled: Bool
    private let lock = NSLock()
    private var lastDraw = Date.distantPast
    private let start = Date()
    private var drew = false

    init(enabled: Bool) { self.enabled = enabled }

    func update(_ p: PullProgress) {
        guard enabled else { return }
        lock.lock()
        defer { lock.unlock() }
        let now = Date()
        guard now.timeIntervalSince(lastDraw) > 0.1 || p.bytesDone == p.bytesTotal else { return }
        lastDraw = now
        let rate = Double(p.bytesDone) / max(now.timeIntervalSince(start), 0.001)
        let eta = rate > 0 ? Double(p.bytesTotal - p.bytesDone) / rate : 0
        let line =
            "\rpulling: \(p.imagesResolved)/\(p.images) images, \(p.blobsDone)/\(p.blobsTotal) blobs  "
            + "\(Format.bytes(p.bytesDone)) / \(Format.bytes(p.bytesTotal))  \(Format.bytes(Int64(rate)))/s  ETA \(Format.seconds(eta))\u{1B}[K"
        OutputStream.writeAll(2, line)
        drew = true
    }

    func finish() {
        lock.lock()
        defer { lock.unlock() }
        if enabled && drew { OutputStream.writeAll(2, "\r\u{1B}[K") }
    }
}
