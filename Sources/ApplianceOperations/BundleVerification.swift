import ApplianceBundle
import Foundation

/// Opening and fully verifying a bundle, off the cooperative pool, with a byte progress display.
public enum BundleVerification {
    public static func verify(
        _ path: String, trustedKeys: [String], allowUnsigned: Bool, workers: Int = BlockingWork.defaultWorkers,
        io: OperationIO
    ) async throws -> VerifiedBundle {
        let keys = try trustedKeys.map { try Ed25519Key.load(path: $0) }
        let archive = try await BlockingWork.run { try BundleArchive.open(path) }
        let total = archive.blobs.reduce(Int64(0)) { $0 + $1.size }
        let progress =
            io.isTerminal && !io.quiet && io.format == .text ? io.byteProgress("verifying", total) : .silent
        defer { progress.finish() }
        io.logger.debug("verifying", metadata: ["bundle": "\(path)"])
        return try await BlockingWork.run {
            try archive.verify(trusted: keys, allowUnsigned: allowUnsigned, workers: workers) { progress.add($0) }
        }
    }
}
