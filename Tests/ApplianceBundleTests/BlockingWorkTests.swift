import Foundation
import Testing

@testable import ApplianceBundle

@Suite struct BlockingWorkTests {
    /// The nice value of the calling thread, from /proc/thread-self/stat (field 19).
    static func threadNice() throws -> Int {
        let stat = try String(contentsOfFile: "/proc/thread-self/stat", encoding: .utf8)
        // Fields after the command name, which is in parentheses and may contain spaces.
        let after = stat[stat.index(after: try #require(stat.lastIndex(of: ")")))...]
        let fields = after.split(separator: " ")
        return try #require(Int(fields[16]))  // field 19 of the line; the 3rd after the name is field 3
    }

    /// Background work lowers its own thread's priority and no other: the caller's thread keeps its own.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/proc/thread-self/stat")))
    func lowerPriorityIsPerThread() async throws {
        let before = try await BlockingWork.run { try Self.threadNice() }
        let lowered = try await BlockingWork.run {
            BlockingWork.lowerThreadPriority()
            return try Self.threadNice()
        }
        let after = try await BlockingWork.run { try Self.threadNice() }
        #expect(lowered == max(before, 10), "nice \(lowered), was \(before)")
        #expect(after == before)
    }
}
