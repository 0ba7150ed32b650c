import Foundation
import Testing

@testable import ApplianceBundle

/// Every refusal of the safe reader, each with an archive the test builds itself, and proof that
/// nothing was written anywhere: not outside the target, not even the target.
@Suite struct UnsafeArchiveTests {
    struct Case: CustomTestStringConvertible, Sendable {
        let label: String
        let build: @Sendable (inout TarFixture) -> Void
        let reason: String
        var testDescription: String { label }
    }

    static let cases: [Case] = [
        Case(label: "absolute path", build: { $0.add("/tmp/appliance-evil", Data("x".utf8)) }, reason: "absolute path"),
        Case(label: "dot-dot traversal", build: { $0.add("ok/../../evil", Data("x".utf8)) }, reason: "path traversal"),
        Case(
            label: "symlink escaping", build: { $0.add("link", kind: .symlink, link: "../../etc") },
            reason: "symbolic link escapes"),
        Case(
            label: "symlink to absolute path", build: { $0.add("link", kind: .symlink, link: "/etc/passwd") },
            reason: "absolute path"),
        Case(
            label: "write through a symlink",
            build: {
                $0.add("dir", kind: .symlink, link: "sub")
                $0.add("dir/file", Data("x".utf8))
            }, reason: "goes through the symbolic link"),
        Case(
            label: "hard link to outside", build: { $0.add("h", kind: .hardlink, link: "/etc/shadow") },
            reason: "hard link to a file outside"),
        Case(label: "character device", build: { $0.add("null", kind: .charDevice) }, reason: "character device"),
        Case(label: "block device", build: { $0.add("sda", kind: .blockDevice) }, reason: "block device"),
        Case(label: "fifo", build: { $0.add("pipe", kind: .fifo) }, reason: "FIFO"),
        Case(
            label: "duplicate names",
            build: {
                $0.add("a.txt", Data("one".utf8))
                $0.add("./a.txt", Data("two".utf8))
            }, reason: "duplicate name"),
        Case(
            label: "absurd declared size", build: { $0.add("big", Data("x".utf8), declaredSize: 0o77777777777) },
            reason: "declares"),
    ]

    @Test(arguments: cases)
    func extractorRefusesAndWritesNothing(_ c: Case) throws {
        let dir = TempDir()
        var tar = TarFixture()
        tar.add("fine.txt", Data("fine".utf8))
        c.build(&tar)
        tar.finish()
        let archive = dir.file("evil.tar")
        try tar.write(to: archive)
        let target = dir.file("out")
        var options = SafeExtractor.Options()
        options.allowSymlinks = true  // even when links are allowed, escaping ones are not
        options.allowHardlinks = true
        let error = #expect(throws: BundleError.self) {
            try SafeExtractor.extract(archive: archive, to: target, options: options)
        }
        guard case .unsafeEntries(_, let entries) = error else {
            Issue.record("expected unsafeEntries, got \(String(describing: error))")
            return
        }
        #expect(entries.contains { $0.reason.contains(c.reason) }, "\(entries)")
        #expect(error?.message.contains("refused") == true)
        // Nothing at all was written: the temp dir holds only the archive.
        #expect(dir.listing() == ["evil.tar"])
        #expect(!FileManager.default.fileExists(atPath: "/tmp/appliance-evil"))
    }

    @Test(arguments: cases)
    func bundleReaderRefusesTheSameArchives(_ c: Case) throws {
        let dir = TempDir()
        var tar = TarFixture()
        tar.add("manifest.yaml", Data("apiVersion: x\n".utf8))
        c.build(&tar)
        tar.finish()
        let archive = dir.file("evil.tar")
        try tar.write(to: archive)
        let error = #expect(throws: BundleError.self) { try BundleArchive.open(archive) }
        #expect(error?.exitStatus == .verification)
    }

    @Test func linksAreRefusedByDefault() throws {
        let dir = TempDir()
        var tar = TarFixture()
        tar.add("a", Data("x".utf8))
        tar.add("inside", kind: .symlink, link: "a")
        tar.finish()
        try tar.write(to: dir.file("t.tar"))
        #expect(throws: BundleError.self) { try SafeExtractor.extract(archive: dir.file("t.tar"), to: dir.file("o")) }
        #expect(!FileManager.default.fileExists(atPath: dir.file("o")))
    }

    @Test func safeArchiveWithInternalLinksExtracts() throws {
        let dir = TempDir()
        var tar = TarFixture()
        tar.add("data", kind: .directory)
        tar.add("data/a.txt", Data("alpha".utf8))
        tar.add("data/link", kind: .symlink, link: "a.txt")
        tar.add("data/hard", kind: .hardlink, link: "data/a.txt")
        tar.finish()
        try tar.write(to: dir.file("t.tar"))
        var options = SafeExtractor.Options()
        options.allowSymlinks = true
        options.allowHardlinks = true
        let names = try SafeExtractor.extract(archive: dir.file("t.tar"), to: dir.file("o"), options: options)
        #expect(names == ["data", "data/a.txt", "data/link", "data/hard"])
        #expect(try String(contentsOfFile: dir.file("o/data/hard"), encoding: .utf8) == "alpha")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: dir.file("o/data/link")) == "a.txt")
    }

    @Test func extractRefusesANonEmptyTarget() throws {
        let dir = TempDir()
        var tar = TarFixture()
        tar.add("a", Data("x".utf8))
        tar.finish()
        try tar.write(to: dir.file("t.tar"))
        try FileManager.default.createDirectory(atPath: dir.file("o"), withIntermediateDirectories: true)
        try Data("keep".utf8).write(to: URL(fileURLWithPath: dir.file("o/precious")))
        #expect(throws: BundleError.destinationExists(path: dir.file("o"))) {
            try SafeExtractor.extract(archive: dir.file("t.tar"), to: dir.file("o"))
        }
        #expect(try String(contentsOfFile: dir.file("o/precious"), encoding: .utf8) == "keep")
    }

    @Test func entryPolicyNormalizesNames() {
        #expect(EntryPolicy.normalize("./a//b/./c") == .accept("a/b/c"))
        #expect(EntryPolicy.normalize("a/../b") == .refuse("path traversal ('..')"))
        #expect(EntryPolicy.normalize("") == .refuse("empty name"))
        #expect(EntryPolicy.escapes(base: "a", target: "../../x"))
        #expect(!EntryPolicy.escapes(base: "a/b", target: "../../x"))
        #expect(!EntryPolicy.escapes(base: "a/b", target: "../x"))
    }
}
