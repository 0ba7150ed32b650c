import ApplianceModel
import Foundation

/// A bundle file opened for reading: its layout checked, manifest and signature read, blobs indexed.
///
/// Verify first, then trust: `verify` checks the signature against trusted keys before the manifest is
/// parsed, then every blob's digest. Reading never extracts anything; blobs are streamed on demand.
public final class BundleArchive: Sendable {
    public static let manifestName = "manifest.yaml"
    public static let signatureName = "manifest.yaml.sig"
    static let blobPrefix = "blobs/sha256/"
    static let maxManifestBytes = 16 << 20

    public let path: String
    public let manifestData: Data
    public let signatureData: Data?
    /// Blobs in archive order, with the size each entry declares.
    public let blobs: [(digest: SHA256Digest, size: Int64)]

    private init(path: String, manifestData: Data, signatureData: Data?, blobs: [(SHA256Digest, Int64)]) {
        self.path = path
        self.manifestData = manifestData
        self.signatureData = signatureData
        self.blobs = blobs.map { (digest: $0.0, size: $0.1) }
    }

    /// Reads every header (skipping data) and applies the safety rules: only regular files named
    /// `manifest.yaml`, `manifest.yaml.sig` and `blobs/sha256/<digest>`, no duplicates, sizes within the file.
    public static func open(_ path: String) throws(BundleError) -> BundleArchive {
        let reader = try ArchiveReader(path: path)
        var policy = EntryPolicy()
        var refused: [BundleError.RefusedEntry] = []
        var unexpected: [String] = []
        var manifest: Data?
        var signature: Data?
        var blobs: [(SHA256Digest, Int64)] = []
        var count = 0
        scan: while let e = try reader.next() {
            count += 1
            switch policy.check(e, archiveSize: reader.fileSize) {
            case .refuse(let reason):
                refused.append(.init(name: e.rawName, reason: reason))
                // An entry that lies about its size cannot be skipped: stop at the first such refusal.
                guard (try? reader.skip()) != nil else { break scan }
            case .accept(let name):
                if e.kind == .directory, name == "blobs" || name == "blobs/sha256" {
                    try reader.skip()
                } else if e.kind != .file {
                    unexpected.append(name)
                    try reader.skip()
                } else if name == manifestName {
                    guard e.size <= maxManifestBytes else {
                        refused.append(.init(name: name, reason: "manifest larger than \(maxManifestBytes) bytes"))
                        try reader.skip()
                        continue
                    }
                    manifest = try reader.readAll(limit: maxManifestBytes)
                } else if name == signatureName {
                    signature = try reader.readAll(limit: 64 << 10)
                } else if name.hasPrefix(blobPrefix),
                    let d = SHA256Digest(hex: String(name.dropFirst(blobPrefix.count))),
                    d.hex == String(name.dropFirst(blobPrefix.count))
                {
                    blobs.append((d, e.size))
                    try reader.skip()
                } else {
                    unexpected.append(name)
                    try reader.skip()
                }
            }
        }
        if !refused.isEmpty { throw .unsafeEntries(path: path, entries: refused) }
        if count == 0 { throw .notABundle(path: path, reason: "the archive is empty") }
        if !unexpected.isEmpty {
            throw .notABundle(
                path: path,
                reason: "unexpected entries: \(unexpected.prefix(5).joined(separator: ", "))"
                    + (unexpected.count > 5 ? " and \(unexpected.count - 5) more" : ""))
        }
        guard let manifest else { throw .notABundle(path: path, reason: "no \(manifestName)") }
        return BundleArchive(path: path, manifestData: manifest, signatureData: signature, blobs: blobs)
    }

    /// Who signed the manifest, once checked.
    public enum Signer: Sendable, Equatable {
        case trustedKey(fingerprint: String)
        /// Accepted without a valid signature because the operator passed --allow-unsigned.
        case unsignedAllowed
    }

    /// Checks `manifest.yaml.sig` against the trusted keys. Must pass before the manifest is used.
    public func verifySignature(trusted: [Ed25519Key], allowUnsigned: Bool) throws(BundleError) -> Signer {
        guard let signatureData else {
            if allowUnsigned { return .unsignedAllowed }
            throw .signatureMissing(path: path)
        }
        guard let sig = ManifestSignature.decode(signatureData) else {
            throw .signatureInvalid(path: path, reason: "\(Self.signatureName) is malformed")
        }
        var trustedPrints: [String] = []
        for key in trusted {
            let fp = try key.fingerprint()
            trustedPrints.append(fp)
            if fp == sig.keyFingerprint {
                guard key.verify(signature: sig.signature, message: manifestData) else {
                    throw .signatureInvalid(
                        path: path, reason: "the manifest bytes do not match the signature of \(fp)")
                }
                return .trustedKey(fingerprint: fp)
            }
        }
        throw .signatureUntrusted(path: path, signedBy: sig.keyFingerprint, trusted: trustedPrints)
    }

    /// Parses the manifest. Call only after `verifySignature` (or for display, clearly marked unverified).
    public func manifest() throws(BundleError) -> BundleManifest {
        do {
            return try BundleManifest.parse(manifestData, label: "\(path):\(Self.manifestName)")
        } catch {
            throw .notABundle(path: path, reason: error.description)
        }
    }

    /// The manifest and the blob list agree: every artifact has its blob with the right size, no extra blobs.
    public func checkContents(against manifest: BundleManifest) throws(BundleError) {
        var problems: [String] = []
        var present: [SHA256Digest: Int64] = [:]
        for b in blobs { present[b.digest] = b.size }
        var listed = Set<SHA256Digest>()
        for (c, a) in manifest.allArtifacts {
            // An image artifact has several blobs (manifest, config, layers); each must be present.
            for (digest, expected) in a.allBlobs {
                listed.insert(digest)
                guard let size = present[digest] else {
                    problems.append("artifact '\(a.name)' of component '\(c.name)': blob \(digest.short) is missing")
                    continue
                }
                if size != expected {
                    problems.append(
                        "artifact '\(a.name)' of component '\(c.name)': blob \(digest.short) has \(size) bytes, the manifest says \(expected)"
                    )
                }
            }
        }
        for b in blobs where !listed.contains(b.digest) {
            problems.append("blob \(b.digest.short) is not listed in the manifest")
        }
        if !problems.isEmpty { throw .contentMismatch(path: path, problems: problems) }
    }

    /// Hashes every blob with `workers` threads, each with its own reader; entries are claimed in archive
    /// order, so the work balances itself. Returns the bytes hashed. Memory: about 2 MiB per worker.
    public func verifyBlobs(
        manifest: BundleManifest, workers: Int = BlockingWork.defaultWorkers,
        progress: (@Sendable (Int64) -> Void)? = nil
    ) throws(BundleError) -> Int64 {
        let names = Dictionary(
            manifest.allArtifacts.flatMap { c, a in
                a.allBlobs.map { ($0.digest, "artifact '\(a.name)' of component '\(c.name)'") }
            },
            uniquingKeysWith: { a, _ in a })
        let claimed = Locked([Bool](repeating: false, count: blobs.count))
        let problems = Locked<[String]>([])
        let failure = Locked<BundleError?>(nil)
        let hashed = Locked<Int64>(0)
        let path = self.path
        BlockingWork.parallel(workers: min(workers, max(1, blobs.count))) { _ in
            do {
                let reader = try ArchiveReader(path: path)
                var index = -1
                while let e = try reader.next() {
                    guard e.kind == .file, case .accept(let name) = EntryPolicy.normalize(e.rawName),
                        name.hasPrefix(Self.blobPrefix),
                        let expected = SHA256Digest(hex: String(name.dropFirst(Self.blobPrefix.count)))
                    else {
                        try reader.skip()
                        continue
                    }
                    index += 1
                    let mine = claimed.withLock { c -> Bool in
                        guard index < c.count, !c[index] else { return false }
                        c[index] = true
                        return true
                    }
                    guard mine, failure.withLock({ $0 == nil }) else {
                        try reader.skip()
                        continue
                    }
                    let h = SHA256Hasher()
                    var n: Int64 = 0
                    try reader.readData { chunk in
                        h.update(chunk)
                        n += Int64(chunk.count)
                        progress?(Int64(chunk.count))
                    }
                    hashed.withLock { $0 += n }
                    let actual = h.finalize()
                    if actual != expected {
                        let who = names[expected] ?? "blob \(expected.short)"
                        problems.withLock {
                            $0.append("\(who): digest mismatch (blob \(expected.short), computed \(actual.short))")
                        }
                    }
                }
            } catch {
                failure.withLock { if $0 == nil { $0 = error as? BundleError ?? .io(path: path, reason: "\(error)") } }
            }
        }
        if let f = failure.withLock({ $0 }) { throw f }
        let found = problems.withLock { $0 }
        if !found.isEmpty { throw .contentMismatch(path: path, problems: found.sorted()) }
        return hashed.withLock { $0 }
    }

    /// The whole check, in order: layout (done by `open`), signature, manifest, blob list, every digest.
    public func verify(
        trusted: [Ed25519Key], allowUnsigned: Bool, workers: Int = BlockingWork.defaultWorkers,
        progress: (@Sendable (Int64) -> Void)? = nil
    ) throws(BundleError) -> VerifiedBundle {
        try verifySigned(trusted: trusted, allowUnsigned: allowUnsigned)
            .verifyBlobs(workers: workers, progress: progress)
    }

    /// The first part of `verify`, which takes milliseconds: signature, manifest, and the blob list against
    /// the manifest (every blob present with its size, none extra). The blobs' digests are not yet checked.
    public func verifySigned(trusted: [Ed25519Key], allowUnsigned: Bool) throws(BundleError) -> SignedBundle {
        let signer = try verifySignature(trusted: trusted, allowUnsigned: allowUnsigned)
        let m = try manifest()
        try checkContents(against: m)
        return SignedBundle(archive: self, manifest: m, signer: signer)
    }

    /// Streams one blob's bytes (for staging). The digest is checked as it streams; a mismatch throws at the end.
    public func streamBlob(_ digest: SHA256Digest, _ body: (UnsafeRawBufferPointer) throws(BundleError) -> Void)
        throws(BundleError)
    {
        let reader = try ArchiveReader(path: path)
        let want = Self.blobPrefix + digest.hex
        while let e = try reader.next() {
            guard case .accept(let name) = EntryPolicy.normalize(e.rawName), name == want, e.kind == .file else {
                try reader.skip()
                continue
            }
            let h = SHA256Hasher()
            try reader.readData { (chunk) throws(BundleError) in
                h.update(chunk)
                try body(chunk)
            }
            let actual = h.finalize()
            if actual != digest {
                throw .contentMismatch(
                    path: path, problems: ["blob \(digest.short): digest mismatch (computed \(actual.short))"])
            }
            return
        }
        throw .contentMismatch(path: path, problems: ["blob \(digest.short) is missing"])
    }
}

/// A bundle whose signature, manifest and blob list have been checked, but not yet its blobs' digests
/// (`verifyBlobs`). Its manifest can be trusted (it is signed); a blob's bytes cannot until checked.
public struct SignedBundle: Sendable {
    public let archive: BundleArchive
    public let manifest: BundleManifest
    public let signer: BundleArchive.Signer

    /// Hashes every blob against the signed manifest (see `BundleArchive.verifyBlobs`).
    public func verifyBlobs(workers: Int = BlockingWork.defaultWorkers, progress: (@Sendable (Int64) -> Void)? = nil)
        throws(BundleError) -> VerifiedBundle
    {
        let bytes = try archive.verifyBlobs(manifest: manifest, workers: workers, progress: progress)
        return VerifiedBundle(archive: archive, manifest: manifest, signer: signer, bytesVerified: bytes)
    }
}

/// A bundle whose signature and every blob digest have been checked.
public struct VerifiedBundle: Sendable {
    public let archive: BundleArchive
    public let manifest: BundleManifest
    public let signer: BundleArchive.Signer
    public let bytesVerified: Int64

    /// The same bundle, as far as its signature goes.
    public var signed: SignedBundle { SignedBundle(archive: archive, manifest: manifest, signer: signer) }
}
