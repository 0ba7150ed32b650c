import ApplianceModel
import Foundation
import Logging

/// Builds a bundle from a spec: prepares every source, hashes them in parallel, writes the manifest, signs it,
/// and writes the tar to a temporary name that is renamed into place only when complete.
public struct BundleBuilder: Sendable {
    public var spec: BundleSpec
    public var signingKey: Ed25519Key?
    /// Where fetched Debian packages are cached between builds.
    public var debCacheDirectory: String
    /// The build time recorded in the manifest and on tar entries; `SOURCE_DATE_EPOCH` makes builds reproducible.
    public var created: Date
    public var workers: Int
    public var logger: Logger
    /// Registry images pulled by `build(output:registry:...)` before packing (issue 15).
    var pulledImages: [String: LocalImage] = [:]
    var pulledCharts: [String: String] = [:]

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

        // 0. Debian dependency closures (issue 11): resolved with apt, fetched in one batch.
        let closure = DebianClosure(workDirectory: work, debCacheDirectory: debCacheDirectory)
        let spec = try closure.expand(self.spec)
        try closure.prefetch(spec, logger: logger)

        // 1. Sources to files.
        let preparer = SourcePreparer(
            workDirectory: work, debCacheDirectory: debCacheDirectory, pulledImages: pulledImages,
            pulledCharts: pulledCharts)
        var prepared: [[PreparedInput]] = []
        for c in spec.components {
            var list: [PreparedInput] = []
            for a in c.artifacts {
                logger.info("preparing \(c.name)/\(a.name)", metadata: ["bundle": "\(spec.name)"])
                list.append(try preparer.prepare(a, component: c.name))
            }
            prepared.append(list)
        }

        // 2. Digests, in parallel across files.
        let paths = Array(Set(prepared.flatMap { $0.map(\.path) })).sorted()
        let digests = Locked<[String: SHA256Digest]>([:])
        let failure = Locked<BundleError?>(nil)
        let next = Locked(0)
        BlockingWork.parallel(workers: min(workers, max(1, paths.count))) { _ in
            while true {
                let i = next.withLock { v -> Int in
                    defer { v += 1 }
                    return v
                }
                guard i < paths.count, failure.withLock({ $0 == nil }) else { return }
                do {
                    let (d, _) = try SHA256Hasher.hash(file: paths[i])
                    digests.withLock { $0[paths[i]] = d }
                } catch {
                    failure.withLock { $0 = $0 ?? (error as? BundleError) }
                }
            }
        }
        if let f = failure.withLock({ $0 }) { throw f }
        let digestOf = digests.withLock { $0 }

        // 3. Manifest.
        var components: [BundleManifest.Component] = []
        var blobFiles: [(SHA256Digest, String, Int64)] = []
        var seen = Set<SHA256Digest>()
        for (c, inputs) in zip(spec.components, prepared) {
            var artifacts: [BundleManifest.Artifact] = []
            for (a, input) in zip(c.artifacts, inputs) {
                guard let d = digestOf[input.path] else { throw .io(path: input.path, reason: "not hashed") }
                artifacts.append(
                    BundleManifest.Artifact(
                        name: a.name, kind: a.kind, sha256: d, size: input.size, roles: a.roles,
                        provenance: input.provenance + a.notes.map { ($0.key, $0.value) }, image: input.image,
                        os: a.os))
                if seen.insert(d).inserted { blobFiles.append((d, input.path, input.size)) }
                // An image's config and layers: already checked against their digests, stored once.
                for b in input.imageBlobFiles where seen.insert(b.digest).inserted {
                    blobFiles.append((b.digest, b.path, b.size))
                }
            }
            components.append(BundleManifest.Component(name: c.name, version: c.version, artifacts: artifacts))
        }
        let stamp = ISO8601DateFormatter.string(
            from: created, timeZone: TimeZone(identifier: "UTC") ?? .current, formatOptions: [.withInternetDateTime])
        // Issue 15: the bill of materials, an artifact like any other (so the signature covers it).
        let sbom = try sbomComponent(components, created: stamp, work: work)
        components.append(sbom.component)
        if seen.insert(sbom.blob.0).inserted { blobFiles.append(sbom.blob) }
        let manifest = BundleManifest(
            name: spec.name, version: spec.version, created: stamp, upgradeFrom: spec.upgradeFrom,
            kubernetesVersion: spec.kubernetesVersion, components: components)
        let manifestBytes = Data(manifest.yaml().utf8)

        // 4. Signature.
        var signature: Data?
        var signedBy: String?
        if let key = signingKey {
            let fp = try key.fingerprint()
            signature = ManifestSignature(keyFingerprint: fp, signature: try key.sign(manifestBytes)).encoded()
            signedBy = fp
        }

        // 5. The tar, under a temporary name, renamed when complete and flushed.
        let partial = "\(output).partial-\(getpid())"
        do {
            let writer = try ArchiveWriter(path: partial, mtime: Int(created.timeIntervalSince1970))
            try writer.add(BundleArchive.manifestName, data: manifestBytes)
            if let signature { try writer.add(BundleArchive.signatureName, data: signature) }
            try writer.addDirectory("blobs")
            try writer.addDirectory("blobs/sha256")
            for (d, path, size) in blobFiles {
                logger.debug("packing \(d.short)", metadata: ["bundle": "\(spec.name)"])
                try writer.add(BundleArchive.blobPrefix + d.hex, file: path, expectedSize: size)
            }
            try writer.close()
            let fd = open(partial, O_RDONLY)
            if fd >= 0 {
                fsync(fd)
                close(fd)
            }
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
