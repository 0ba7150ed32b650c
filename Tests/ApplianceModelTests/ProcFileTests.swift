import Foundation
import Testing

@testable import ApplianceModel

@Suite struct ProcFileTests {
    /// A sleeping process's smaps is tens of KiB and does not change while it sleeps: read whole, it is
    /// byte for byte what `cat` prints (Foundation's readers stop after the first 4 KiB of such files).
    @Test func readsAPseudoFileLongerThanAPageWhole() throws {
        let sleeper = Process()
        sleeper.executableURL = URL(fileURLWithPath: "/bin/sleep")
        sleeper.arguments = ["30"]
        try sleeper.run()
        defer { sleeper.terminate() }
        Thread.sleep(forTimeInterval: 0.3)
        let path = "/proc/\(sleeper.processIdentifier)/smaps"

        let cat = Process()
        let pipe = Pipe()
        cat.executableURL = URL(fileURLWithPath: "/bin/cat")
        cat.arguments = [path]
        cat.standardOutput = pipe
        try cat.run()
        let expected = pipe.fileHandleForReading.readDataToEndOfFile()
        cat.waitUntilExit()

        let read = try #require(ProcFile.text(path))
        let printed = String(decoding: expected, as: UTF8.self)
        #expect(expected.count > 8192, "smaps of sleep is only \(expected.count) bytes")
        // Counters such as Referenced may move between two reads; the lines and the mappings may not.
        func mappings(_ text: String) -> [Substring] {
            text.split(separator: "\n").filter { $0.split(separator: " ").first?.contains("-") == true }
        }
        #expect(read.split(separator: "\n").count == printed.split(separator: "\n").count)
        #expect(mappings(read) == mappings(printed), "read \(read.utf8.count) bytes, cat printed \(expected.count)")
        #expect(mappings(read).count > 10)
        #expect(read.hasSuffix("\n") && read.utf8.count > 8192)
    }

    @Test func aMissingFileIsNil() {
        #expect(ProcFile.data("/proc/no-such-file") == nil)
        #expect(ProcFile.text("/nonexistent/file") == nil)
    }
}
