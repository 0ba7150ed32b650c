import ApplianceBundle
import Foundation

/// Opening and fully verifying a bundle, off the cooperative pool, with a byte progress display.
public enum BundleVerification {
    public static func verify(
        _ path: String, trustedKeys: [String], allowUnsigned: Bool, workers: Int = BlockingWork.defaultWorkers,
        io: OperationIO
    ) async throws -> VerifiedBundle {
        let signed = try await verifySigned(path, trustedKeys: trustedKeys, allowUnsigned: allowUnsigned)
        let total = signed.archive.blobs.reduce(Int64(0)) { $0 + $1.size }
        let progress =
            io.isTerminal && !io.quiet && io.format == .text ? io.byteProgress("verifying", total) : .silent
        defer { progress.finish() }
        io.logger.debug("verifying", metadata: ["bundle": "\(path)"])
        return try await BlockingWork.run { try signed.verifyBlobs(workers: workers) { progress.add($0) } }
    }

    /// The quick part of the verification (signature, manifest, blob list; milliseconds): what may be used
    /// before the blobs' digests are checked, which `checkingBlobs` then does in the background.
    public static func verifySigned(_ path: String, trustedKeys: [String], allowUnsigned: Bool) async throws
        -> SignedBundle
    {
        let keys = try trustedKeys.map { try Ed25519Key.load(path: $0) }
        return try await BlockingWork.run {
            try BundleArchive.open(path).verifySigned(trusted: keys, allowUnsigned: allowUnsigned)
        }
    }

    /// Every blob's digest checked in the background, started now: one thread at a lower priority, so
    /// that it takes the CPU the work it runs beside leaves (staging's stream, which waits for it only at
    /// the end); no progress display (that work has its own).
    public static func checkingBlobs(_ signed: SignedBundle) -> Task<VerifiedBundle, Error> {
        Task {
            try await BlockingWork.run {
                BlockingWork.lowerThreadPriority()
                return try signed.verifyBlobs(workers: 1)
            }
        }
    }
}
