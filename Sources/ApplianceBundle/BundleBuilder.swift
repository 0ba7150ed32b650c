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
        // The host GPU stack's version pins (issue 13): the fabric manager is exactly the driver's version.
        var gpuPackages: [GPUHostPackages.Package] = []
        for (c, inputs) in zip(spec.components, prepared) {
            for (a, input) in zip(c.artifacts, inputs) where a.kind == .deb {
                let p = input.provenance
                guard let name = p.first(where: { $0.0 == "package" })?.1,
                    let version = p.first(where: { $0.0 == "version" })?.1,
                    GPUHostPackages.part(ofPackage: name) != nil
                else { continue }
                gpuPackages.append(.init(name: name, version: version, artifact: a.name))
            }
        }
        if let problem = GPUHostPackages.pinProblems(gpuPackages).first {
            throw .source(
                artifact: gpuPackages.first { problem.contains("'\($0.artifact)'") }?.artifact ?? "nvidia",
                reason: GPUHostPackages.pinProblems(gpuPackages).joined(separator: "; "),
                hint: "bundle the fabric manager (and libnvidia-nscq) at exactly the driver's version")
        }

        // 2. The blobs, each distinct file read once: written into the tar (under a temporary name) and
        // hashed from the same buffers on two threads. The manifest, which names every digest, follows.
        var order: [(path: String, size: Int64)] = []
        var listed = Set<String>()
        for input in prepared.joined() where listed.insert(input.path).inserted {
            order.append((input.path, input.size))
        }
        // An image's config and layers (issue 15) follow: already checked against their digests, stored once.
        for input in prepared.joined() {
            for b in input.imageBlobFiles where listed.insert(b.path).inserted { order.append((b.path, b.size)) }
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
                    for b in input.imageBlobFiles where digestOf[b.path] != b.digest {
                        throw BundleError.io(path: b.path, reason: "changed while the bundle was built")
                    }
                    artifacts.append(
                        BundleManifest.Artifact(
                            name: a.name, kind: a.kind, sha256: d, size: input.size, roles: a.roles,
                            provenance: input.provenance + a.notes.map { ($0.key, $0.value) }, image: input.image,
                            os: a.os))
                }
                components.append(BundleManifest.Component(name: c.name, version: c.version, artifacts: artifacts))
            }
            let stamp = ISO8601DateFormatter.string(
                from: created, timeZone: TimeZone(identifier: "UTC") ?? .current,
                formatOptions: [.withInternetDateTime])
            // Issue 15: the bill of materials, an artifact like any other (so the signature covers it).
            let sbom = try sbomComponent(components, created: stamp, work: work)
            components.append(sbom.component)
            let sbomDigest = try writer.addBlobs([(sbom.blob.1, sbom.blob.2)])[sbom.blob.1]
            guard sbomDigest == sbom.blob.0 else {
                throw BundleError.io(path: sbom.blob.1, reason: "the bill of materials changed while it was packed")
            }
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
