import ApplianceModel

/// Everything that can go wrong reading, verifying or building a bundle, with the context to act on it.
public enum BundleError: ApplianceFailure, Equatable {
    /// A file could not be read or written.
    case io(path: String, reason: String)
    /// libarchive could not read the archive (truncated, corrupt, not a tar).
    case unreadableArchive(path: String, reason: String)
    /// An entry is refused by the safety rules (traversal, links, devices, duplicates, absurd sizes).
    case unsafeEntries(path: String, entries: [RefusedEntry])
    /// The archive is readable but is not laid out as a bundle.
    case notABundle(path: String, reason: String)
    case signatureMissing(path: String)
    case signatureUntrusted(path: String, signedBy: String, trusted: [String])
    case signatureInvalid(path: String, reason: String)
    /// Blob digests, sizes or the blob list disagree with the manifest.
    case contentMismatch(path: String, problems: [String])
    case key(path: String, reason: String)
    /// An artifact source in a spec could not be used.
    case source(artifact: String, reason: String, hint: String?)
    case crypto(reason: String)
    case destinationExists(path: String)

    public struct RefusedEntry: Sendable, Equatable, CustomStringConvertible {
        public var name: String
        public var reason: String
        public var description: String { "'\(name)': \(reason)" }
    }

    public var message: String {
        switch self {
        case let .io(path, reason): "\(path): \(reason)"
        case let .unreadableArchive(path, reason): "cannot read archive \(path): \(reason)"
        case let .unsafeEntries(path, entries):
            "refused \(entries.count == 1 ? "an unsafe entry" : "\(entries.count) unsafe entries") in \(path):\n"
                + entries.map { "  \($0)" }.joined(separator: "\n")
        case let .notABundle(path, reason): "\(path) is not an appliance bundle: \(reason)"
        case let .signatureMissing(path): "\(path) is not signed (no manifest.yaml.sig)"
        case let .signatureUntrusted(path, signedBy, trusted):
            "\(path) is signed by key \(signedBy), which is not trusted"
                + (trusted.isEmpty ? " (no trusted keys were given)" : " (trusted: \(trusted.joined(separator: ", ")))")
        case let .signatureInvalid(path, reason): "the signature of \(path) does not verify: \(reason)"
        case let .contentMismatch(path, problems):
            "\(path) does not match its manifest (\(problems.count) problem\(problems.count == 1 ? "" : "s")):\n"
                + problems.map { "  \($0)" }.joined(separator: "\n")
        case let .key(path, reason): "key \(path): \(reason)"
        case let .source(artifact, reason, _): "artifact '\(artifact)': \(reason)"
        case let .crypto(reason): "cryptography error: \(reason)"
        case let .destinationExists(path): "\(path) already exists and is not empty"
        }
    }

    public var hint: String? {
        switch self {
        case .unreadableArchive:
            "the file may be truncated or damaged in transfer; copy it again and compare its sha256sum"
        case .unsafeEntries: "this archive was not produced by `appliance bundle build`; do not use it"
        case .signatureMissing:
            "ask for a signed bundle, or pass --allow-unsigned if you built it yourself and accept the risk"
        case .signatureUntrusted: "pass the vendor's public key with --trust PUBLIC_KEY.pem"
        case .signatureInvalid: "the manifest was changed after signing, or the bundle is damaged; do not use it"
        case .contentMismatch: "a blob was changed or damaged; copy the bundle again from its source"
        case .key: "create a key pair with `appliance bundle keygen --out DIR`"
        case .source(_, _, let hint): hint
        case .destinationExists: "choose an empty or new directory"
        default: nil
        }
    }

    public var exitStatus: ExitStatus {
        switch self {
        case .unreadableArchive, .unsafeEntries, .notABundle, .signatureMissing, .signatureUntrusted, .signatureInvalid,
            .contentMismatch:
            .verification
        default: .failure
        }
    }
}
