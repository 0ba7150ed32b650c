import Foundation
import Testing

@testable import ApplianceModel

@Suite struct YAMLReaderTests {
    @Test func collectsEveryProblemSortedByPosition() throws {
        let text = """
            name: 12
            count: many
            flag: maybe
            extra: 1
            """
        let (r, root) = try YAMLReader.parse(text: text, file: "t.yaml", subject: "test")
        let m = root.mapping(allowing: ["name", "count", "flag", "missing"])
        _ = m?["count"]?.int()
        _ = m?["flag"]?.bool()
        _ = m?.require("missing")
        let error = #expect(throws: DiagnosticsError.self) { try r.finish() }
        let lines = error?.diagnostics.map { $0.location?.line ?? 0 }
        #expect(lines == [1, 2, 3, 4])
        #expect(error?.diagnostics[0].message == "missing required field 'missing' in the document")
        #expect(error?.diagnostics[3].message.hasPrefix("unknown field 'extra'") == true)
        #expect(error?.description.contains("t.yaml:2:8: 'count' must be an integer") == true)
    }

    @Test func emptyDocumentIsAnError() {
        let error = #expect(throws: DiagnosticsError.self) {
            try YAMLReader.parse(text: "", file: "e.yaml", subject: "s")
        }
        #expect(error?.diagnostics.first?.message == "the file is empty")
    }

    @Test func treeSerializationQuotesAmbiguousStrings() throws {
        let tree = YAMLTree.map([
            ("version", .string("1.10")), ("flag", .string("yes")), ("n", .int(3)), ("list", .list([.string("a")])),
        ])
        let text = tree.serialized()
        #expect(text.contains("version: \"1.10\""))
        #expect(text.contains("flag: \"yes\""))
        let (_, root) = try YAMLReader.parse(text: text, file: "x", subject: "x")
        #expect(root.mapping(allowing: ["version", "flag", "n", "list"])?["version"]?.string() == "1.10")
    }

    @Test func editDistanceSuggestsCloseNames() {
        #expect(editDistance("sourc", "source") == 1)
        #expect(editDistance("", "abc") == 3)
    }
}
