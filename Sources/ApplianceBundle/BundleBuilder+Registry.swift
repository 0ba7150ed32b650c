import ApplianceModel
import Foundation

// Issue 15: builds that pull images from registries, write a lock file, or follow one.
extension BundleBuilder {
    /// Pulls every registry image of the spec (into `registry.cacheDirectory`), then builds. With `locked`,
    /// every image is pulled by its locked digest, every Debian package fetched at its locked version and
    /// checked against its locked sha256, and the lock's build time is used: the same spec and lock give a
    /// byte-identical bundle. Returns the result and the lock this build resolved.
    public func build(
        output: String, registry: RegistryOptions, locked: BundleLock? = nil,
        progress: (@Sendable (PullProgress) -> Void)? = nil
    ) async throws -> (result: Result, lock: BundleLock) {
        var builder = self
        if let locked {
            guard locked.name == spec.name else {
                throw RegistryError.lock(
                    image: "lock file", reason: "it is for bundle '\(locked.name)', the spec builds '\(spec.name)'")
            }
            guard let date = ISO8601DateFormatter().date(from: locked.created) else {
                throw RegistryError.lock(image: "lock file", reason: "invalid created time '\(locked.created)'")
            }
            if ProcessInfo.processInfo.environment["SOURCE_DATE_EPOCH"] == nil { builder.created = date }
            builder.spec = try Self.pinDebs(spec, to: locked)
            let pinned = builder.spec
            let cache = debCacheDirectory
            try await BlockingWork.run { try Self.checkLockedDebs(pinned, locked, cache: cache) }
        }
        let requests = spec.registryImages.map {
            ImagePuller.Request(
                key: "\($0.component)/\($0.artifact.name)", reference: $0.reference, platform: $0.platform)
        }
        let puller = ImagePuller(options: registry, logger: logger, onProgress: progress)
        let (images, lockedImages) = try await puller.pull(requests, lock: locked)
        builder.pulledImages = images
        var charts: [BundleLock.Chart] = []
        let fetcher = ChartFetcher(
            cacheDirectory: registry.cacheDirectory, caFile: registry.caFile, credentials: registry.credentials,
            logger: logger)
        for c in spec.components {
            for a in c.artifacts {
                guard case .chartRepository(let url, let name, let version) = a.source else { continue }
                var pin: SHA256Digest?
                if let locked {
                    guard let entry = locked.chart(url: url, name: name, version: version) else {
                        throw RegistryError.lock(
                            image: "chart \(name) \(version)", reason: "the lock file pins no digest for this chart")
                    }
                    pin = entry.sha256
                }
                let got = try await fetcher.fetch(url: url, name: name, version: version, locked: pin, artifact: a.name)
                builder.pulledCharts["\(c.name)/\(a.name)"] = got.path
                charts.append(BundleLock.Chart(url: url, name: name, version: version, sha256: got.digest))
            }
        }
        let b = builder
        let result = try await BlockingWork.run { try b.build(output: output) }
        var lock = Self.lock(for: result.manifest, spec: builder.spec, images: lockedImages)
        lock.charts = charts
        return (result, lock)
    }

    /// The lock of a finished build: its images (as resolved) and the Debian packages fetched by name.
    static func lock(for manifest: BundleManifest, spec: BundleSpec, images: [BundleLock.Image]) -> BundleLock {
        var byName: Set<String> = []
        for c in spec.components {
            for a in c.artifacts {
                if case .debPackage = a.source { byName.insert("\(c.name)/\(a.name)") }
            }
        }
        var debs: [BundleLock.Deb] = []
        for (c, a) in manifest.allArtifacts where byName.contains("\(c.name)/\(a.name)") {
            guard let p = a.provenance("package"), let v = a.provenance("version"),
                let arch = a.provenance("architecture")
            else { continue }
            if !debs.contains(where: { $0.package == p && $0.architecture == arch }) {
                debs.append(BundleLock.Deb(package: p, version: v, architecture: arch, sha256: a.sha256))
            }
        }
        return BundleLock(
            name: manifest.name, version: manifest.version, created: manifest.created, images: images, debs: debs)
    }

    /// The spec with every Debian package pinned to its locked version.
    static func pinDebs(_ spec: BundleSpec, to lock: BundleLock) throws(RegistryError) -> BundleSpec {
        var out = spec
        for ci in out.components.indices {
            for ai in out.components[ci].artifacts.indices {
                guard case .debPackage(let name, let version, let arch) = out.components[ci].artifacts[ai].source
                else { continue }
                guard let entry = lock.deb(package: name, architecture: arch) else {
                    throw .lock(image: "deb \(name)", reason: "the lock file pins no version of this package")
                }
                if let version, version != entry.version {
                    throw .lock(
                        image: "deb \(name)", reason: "the spec pins \(version) but the lock file \(entry.version)")
                }
                out.components[ci].artifacts[ai].source = .debPackage(
                    name: name, version: entry.version, architecture: entry.architecture)
            }
        }
        return out
    }

    /// Fetches each locked package (or finds it cached) and checks its bytes against the lock.
    static func checkLockedDebs(_ spec: BundleSpec, _ lock: BundleLock, cache: String) throws {
        for c in spec.components {
            for a in c.artifacts {
                guard case .debPackage(let name, let version, let arch) = a.source, let version,
                    let entry = lock.deb(package: name, architecture: arch)
                else { continue }
                let path: String
                do {
                    path = try DebianPackage.fetch(
                        name: name, version: version, architecture: arch, cache: cache, artifact: a.name)
                } catch {
                    throw RegistryError.lock(
                        image: "deb \(name)=\(version)", reason: "the locked version cannot be fetched: \(error)")
                }
                let (digest, _) = try SHA256Hasher.hash(file: path)
                guard digest == entry.sha256 else {
                    throw RegistryError.lock(
                        image: "deb \(name)=\(version)",
                        reason: "the package now has sha256 \(digest.short), the lock file says \(entry.sha256.short)")
                }
            }
        }
    }
}
