import ApplianceModel
import Foundation
import Logging

/// How `bundle build` reaches registries.
public struct RegistryOptions: Sendable {
    /// A PEM file of extra CA certificates for private registries (added to the system's roots).
    public var caFile: String?
    public var credentials: RegistryCredentials
    /// Blobs downloaded at the same time, across all images.
    public var parallelDownloads: Int
    /// Content-addressed blob cache (`blobs/sha256/<hex>`, `<hex>.partial` while downloading): makes a
    /// second build and a resumed build fetch only what is missing.
    public var cacheDirectory: String

    public init(
        caFile: String? = nil, credentials: RegistryCredentials = RegistryCredentials(), parallelDownloads: Int = 6,
        cacheDirectory: String
    ) {
        self.caFile = caFile
        self.credentials = credentials
        self.parallelDownloads = parallelDownloads
        self.cacheDirectory = cacheDirectory
    }
}

/// Progress of the pulls of one build, for a display like staging's.
public struct PullProgress: Sendable, Equatable {
    public var images = 0
    public var imagesResolved = 0
    public var blobsTotal = 0
    public var blobsDone = 0
    /// Bytes of blobs to download (blobs already in the cache are not counted).
    public var bytesTotal: Int64 = 0
    public var bytesDone: Int64 = 0
}

/// Pulls the registry images of a spec into the blob cache: resolves each reference (tag or digest; with
/// a lock, the locked digest) to the platform's manifest, then downloads every blob not yet cached, each
/// once however many images share it, `parallelDownloads` at a time.
struct ImagePuller: Sendable {
    var options: RegistryOptions
    var logger: Logger
    var onProgress: (@Sendable (PullProgress) -> Void)?

    struct Request: Sendable {
        var key: String
        var reference: String
        var platform: String
    }

    var blobDirectory: String { options.cacheDirectory + "/blobs/sha256" }

    func pull(_ requests: [Request], lock: BundleLock?) async throws -> (
        images: [String: LocalImage], lock: [BundleLock.Image]
    ) {
        guard !requests.isEmpty else { return ([:], []) }
        do {
            try FileManager.default.createDirectory(atPath: blobDirectory, withIntermediateDirectories: true)
        } catch {
            throw RegistryError.io(path: blobDirectory, reason: error.localizedDescription)
        }
        let client = try RegistryClient(caFile: options.caFile, credentials: options.credentials, logger: logger)
        do {
            let result = try await pull(requests, lock: lock, client: client)
            await client.shutdown()
            return result
        } catch {
            await client.shutdown()
            throw error
        }
    }

    private struct Resolved: Sendable {
        var request: Request
        var ref: ImageReference
        var resolvedDigest: SHA256Digest
        var manifestDigest: SHA256Digest
        var mediaType: String
        var config: ImageBlob
        var layers: [ImageBlob]
    }

    private func pull(_ requests: [Request], lock: BundleLock?, client: RegistryClient) async throws -> (
        images: [String: LocalImage], lock: [BundleLock.Image]
    ) {
        let progress = Locked(PullProgress())
        progress.withLock { $0.images = requests.count }
        let onProgress = self.onProgress
        let report: @Sendable () -> Void = { onProgress?(progress.withLock { $0 }) }

        // 1. Manifests, resolved to the platform (a few small requests per image, in parallel).
        let resolved = try await withThrowingTaskGroup(of: Resolved.self) { group in
            var inFlight = 0
            var out: [Resolved] = []
            for r in requests {
                if inFlight >= options.parallelDownloads, let done = try await group.next() {
                    out.append(done)
                    inFlight -= 1
                }
                group.addTask {
                    let x = try await resolve(r, lock: lock, client: client)
                    progress.withLock { $0.imagesResolved += 1 }
                    report()
                    return x
                }
                inFlight += 1
            }
            for try await done in group { out.append(done) }
            return out
        }
        let byKey = Dictionary(resolved.map { ($0.request.key, $0) }, uniquingKeysWith: { a, _ in a })

        // 2. Blobs: each distinct digest once; cached ones are re-hashed, missing ones downloaded.
        var wanted: [SHA256Digest: (ImageBlob, Resolved)] = [:]
        var order: [SHA256Digest] = []
        for r in resolved {
            for b in [r.config] + r.layers where wanted[b.digest] == nil {
                wanted[b.digest] = (b, r)
                order.append(b.digest)
            }
        }
        var missing: [(ImageBlob, Resolved)] = []
        for d in order {
            guard let (b, r) = wanted[d] else { continue }
            let path = "\(blobDirectory)/\(d.hex)"
            if let size = fileSize(path) {
                if size == b.size, (try? SHA256Hasher.hash(file: path).0) == d { continue }
                unlink(path)
                logger.warning("cached blob \(d.short) was damaged; fetching it again")
            }
            missing.append((b, r))
        }
        progress.withLock {
            $0.blobsTotal = missing.count
            $0.bytesTotal = missing.reduce(0) { $0 + $1.0.size }
        }
        report()
        let dir = blobDirectory
        try await withThrowingTaskGroup(of: Void.self) { group in
            var inFlight = 0
            for (b, r) in missing.sorted(by: { $0.0.size > $1.0.size }) {
                if inFlight >= options.parallelDownloads {
                    _ = try await group.next()
                    inFlight -= 1
                }
                group.addTask {
                    try await client.blob(
                        r.ref, digest: b.digest, size: b.size, to: "\(dir)/\(b.digest.hex)",
                        image: r.request.reference,
                        progress: { n in
                            progress.withLock { $0.bytesDone += n }
                        })
                    progress.withLock { $0.blobsDone += 1 }
                    report()
                }
                inFlight += 1
            }
            try await group.waitForAll()
        }
        report()

        // 3. The images, with their platform checked against the config.
        var images: [String: LocalImage] = [:]
        var lockEntries: [BundleLock.Image] = []
        for req in requests {
            guard let r = byKey[req.key] else { continue }
            let configPath = "\(dir)/\(r.config.digest.hex)"
            if let data = FileManager.default.contents(atPath: configPath),
                let actual = try? ImageConfig.platform(of: data), let want = ImagePlatform(req.platform),
                actual.os != want.os || actual.architecture != want.architecture
            {
                throw RegistryError.notFound(
                    image: req.reference,
                    reason: "the image is for \(actual), not \(want) (it has no index to choose from)")
            }
            let manifestPath = "\(dir)/\(r.manifestDigest.hex)"
            let files = ([r.config] + r.layers).map {
                ImageBlobFile(digest: $0.digest, path: "\(dir)/\($0.digest.hex)", size: $0.size)
            }
            images[req.key] = LocalImage(
                descriptor: ImageDescriptor(
                    reference: req.reference, platform: req.platform, mediaType: r.mediaType,
                    blobs: [r.config] + r.layers),
                manifestDigest: r.manifestDigest, manifestPath: manifestPath,
                manifestSize: fileSize(manifestPath) ?? 0, blobFiles: files,
                provenance: ImageConfig.withLicense(
                    [
                        ("type", "registry"), ("image", req.reference), ("platform", req.platform),
                        ("resolvedDigest", r.resolvedDigest.prefixed), ("manifestDigest", r.manifestDigest.prefixed),
                    ], configPath: configPath))
            lockEntries.append(
                BundleLock.Image(
                    reference: req.reference, platform: req.platform, digest: r.resolvedDigest,
                    manifest: r.manifestDigest))
        }
        return (images, lockEntries)
    }

    /// Tag (or locked digest) -> manifest; an index is resolved to the platform's manifest.
    private func resolve(_ req: Request, lock: BundleLock?, client: RegistryClient) async throws -> Resolved {
        guard case .success(let ref) = ImageReference.parse(req.reference), let platform = ImagePlatform(req.platform)
        else {
            throw RegistryError.notFound(image: req.reference, reason: "invalid reference or platform")
        }
        var ask = ref.manifestReference
        var locked: BundleLock.Image?
        if let lock {
            guard let entry = lock.image(reference: req.reference, platform: req.platform) else {
                throw RegistryError.lock(
                    image: req.reference, reason: "the lock file pins no digest for this image on \(req.platform)")
            }
            if let d = ref.digest, d != entry.digest {
                throw RegistryError.lock(
                    image: req.reference,
                    reason: "the spec pins \(d.prefixed) but the lock file \(entry.digest.prefixed)")
            }
            locked = entry
            ask = entry.digest.prefixed
        }
        let top: RegistryClient.FetchedManifest
        do {
            top = try await client.manifest(ref, reference: ask, image: req.reference)
        } catch RegistryError.notFound(let image, let reason) where locked != nil {
            throw RegistryError.lock(
                image: image, reason: "the registry no longer has the locked digest \(ask) (\(reason))")
        }
        var manifestDigest = top.digest
        var data = top.data
        var doc: OCIDocument
        switch OCIDocument.parse(top.data, headerType: top.mediaType) {
        case .failure(let why): throw RegistryError.badContent(image: req.reference, reason: why.description)
        case .success(let d): doc = d
        }
        if case .index(_, let entries) = doc {
            guard let entry = OCIDocument.select(entries, platform: platform) else {
                let have = entries.compactMap { $0.platform?.description }.joined(separator: ", ")
                throw RegistryError.notFound(
                    image: req.reference, reason: "the image index has no manifest for \(platform) (it has: \(have))")
            }
            let m = try await client.manifest(ref, reference: entry.digest.prefixed, image: req.reference)
            manifestDigest = m.digest
            data = m.data
            switch OCIDocument.parse(m.data, headerType: entry.mediaType.isEmpty ? m.mediaType : entry.mediaType) {
            case .failure(let why): throw RegistryError.badContent(image: req.reference, reason: why.description)
            case .success(let d): doc = d
            }
        }
        guard case .manifest(let mediaType, let config, let layers) = doc else {
            throw RegistryError.badContent(image: req.reference, reason: "an index inside an index is not supported")
        }
        if let locked, locked.manifest != manifestDigest {
            throw RegistryError.lock(
                image: req.reference,
                reason:
                    "the locked digest now resolves to manifest \(manifestDigest.prefixed), not \(locked.manifest.prefixed)"
            )
        }
        // The manifest's exact bytes become a blob (its digest is the upstream one).
        let path = "\(blobDirectory)/\(manifestDigest.hex)"
        // Always rewritten (a few KiB), so a damaged cached copy can never be packed.
        do {
            let tmp = path + ".partial-\(getpid())-\(UUID().uuidString.prefix(8))"
            do {
                try data.write(to: URL(fileURLWithPath: tmp))
            } catch {
                throw RegistryError.io(path: tmp, reason: error.localizedDescription)
            }
            guard rename(tmp, path) == 0 else {
                unlink(tmp)
                throw RegistryError.io(path: path, reason: String(cString: strerror(errno)))
            }
        }
        return Resolved(
            request: req, ref: ref, resolvedDigest: top.digest, manifestDigest: manifestDigest, mediaType: mediaType,
            config: config, layers: layers)
    }

    private func fileSize(_ path: String) -> Int64? {
        var st = stat()
        return stat(path, &st) == 0 ? Int64(st.st_size) : nil
    }
}
