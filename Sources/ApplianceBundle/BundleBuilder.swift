import ApplianceModel
import Foundation
import Logging

/// Builds a bundle from a spec: prepares every source, then writes the tar to a temporary name in one pass
/// (each blob read once, written and hashed from the same buffers on two threads), then the manifest and its
/// signature, and renames the tar into place only when complete and flushed.
public struct BundleBuilder: Sendable {
    public var spec: BundleSpec
    public var signingKey: Ed25519Key?
    /// Where fetched Debian packages are cached between builds.
    public var debCacheDirectory: String
    /// The build time recorded in the manifest and on tar entries; `SOURCE_DATE_EPOCH` makes builds reproducible.
    public var created: Date
    public var workers: Int
    public var logger: Logger

    public init(
        spec: BundleSpec, signingKey: Ed25519Key?, debCacheDirectory: String, created: Date? = nil,
        workers: Int = BlockingWork.defaultWorkers, logger: Logger = Logger(label: "appliance.bundle")
    ) {
        self.spec = spec
        self.signingKey = signingKey
        self.debCacheDirectory = debCacheDirectory
        let epoch = ProcessInfo.processInfo.environment["SOURCE_DATE_EPOCH"].flatMap(TimeInterval.init)
        self.created = created ?? epoch.map { Date(timeIntervalSince1970: $0) } ?? Date()
        self.workers = workers
        self.logger = logger
    }

    public struct Result: Sendable {
        public var path: String
        public var manifest: BundleManifest
        public var bytes: Int64
        public var signedBy: String?
    }

    public func build(output: String) throws(BundleError) -> Result {
        let outDir = (output as NSString).deletingLastPathComponent
        let work = "\(outDir.isEmpty ? "." : outDir)/.appliance-build-\(getpid())"
        try? FileManager.default.removeItem(atPath: work)
        do {
            try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        } catch {
            throw .io(path: work, reason: error.localizedDescription)
        }
        defer { try? FileManager.default.removeItem(atPath: work) }

        // 1. Sources to files.
        let preparer = SourcePreparer(workDirectory: work, debCacheDirectory: debCacheDirectory)
        var prepared: [[PreparedInput]] = []
        for c in spec.components {
            var list: [PreparedInput] = []
            for a in c.artifacts {
                logger.info("preparing \(c.name)/\(a.name)", metadata: ["bundle": "\(spec.name)"])
                list.append(try preparer.prepare(a, component: c.name))
            }
            prepared.append(list)
        }

        // 2. The blobs, each distinct file read once: written into the tar (under a temporary name) and
        // hashed from the same buffers on two threads. The manifest, which names every digest, follows.
        var order: [(path: String, size: Int64)] = []
        var listed = Set<String>()
        for input in prepared.joined() where listed.insert(input.path).inserted {
            order.append((input.path, input.size))
        }
        let partial = "\(output).partial-\(getpid())"
        let manifest: BundleManifest
        var signedBy: String?
        do {
            let writer = try BundleTarWriter(path: partial, mtime: Int(created.timeIntervalSince1970))
            try writer.addDirectory("blobs")
            try writer.addDirectory("blobs/sha256")
            logger.debug("packing \(order.count) files", metadata: ["bundle": "\(spec.name)"])
            let digestOf = try writer.addBlobs(order)

            // 3. Manifest.
            var components: [BundleManifest.Component] = []
            for (c, inputs) in zip(spec.components, prepared) {
                var artifacts: [BundleManifest.Artifact] = []
                for (a, input) in zip(c.artifacts, inputs) {
                    guard let d = digestOf[input.path] else {
                        throw BundleError.io(path: input.path, reason: "not hashed")
                    }
                    artifacts.append(
                        BundleManifest.Artifact(
                            name: a.name, kind: a.kind, sha256: d, size: input.size, roles: a.roles,
                            provenance: input.provenance))
                }
                components.append(BundleManifest.Component(name: c.name, version: c.version, artifacts: artifacts))
            }
            let stamp = ISO8601DateFormatter.string(
                from: created, timeZone: TimeZone(identifier: "UTC") ?? .current,
                formatOptions: [.withInternetDateTime])
            manifest = BundleManifest(
                name: spec.name, version: spec.version, created: stamp, upgradeFrom: spec.upgradeFrom,
                kubernetesVersion: spec.kubernetesVersion, components: components)
            let manifestBytes = Data(manifest.yaml().utf8)

            // 4. Signature.
            try writer.add(BundleArchive.manifestName, data: manifestBytes)
            if let key = signingKey {
                let fp = try key.fingerprint()
                let signature = ManifestSignature(keyFingerprint: fp, signature: try key.sign(manifestBytes)).encoded()
                try writer.add(BundleArchive.signatureName, data: signature)
                signedBy = fp
            }

            // 5. Flushed to disk, then renamed into place.
            try writer.close()
            guard rename(partial, output) == 0 else {
                throw BundleError.io(path: output, reason: String(cString: strerror(errno)))
            }
        } catch {
            unlink(partial)
            throw (error as? BundleError) ?? .io(path: output, reason: "\(error)")
        }
        var st = stat()
        _ = stat(output, &st)
        return Result(path: output, manifest: manifest, bytes: Int64(st.st_size), signedBy: signedBy)
    }
}
