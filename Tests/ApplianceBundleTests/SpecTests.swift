import ApplianceModel
import Foundation
import Testing

@testable import ApplianceBundle

@Suite struct SpecTests {
    func load(_ text: String) throws -> BundleSpec {
        let dir = TempDir()
        let path = dir.file("spec.yaml")
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return try BundleSpec.load(path: path)
    }

    func problems(_ text: String) -> [Diagnostic] {
        do {
            _ = try load(text)
            return []
        } catch let e as DiagnosticsError {
            return e.diagnostics
        } catch {
            return [Diagnostic("\(error)", at: nil)]
        }
    }

    let valid = """
        apiVersion: appliance.dev/v1alpha1
        kind: BundleSpec
        metadata: {name: t}
        spec:
          version: 1.0.0
          kubernetes: {version: v1.34.3}
          components:
            - name: c
              version: "1"
              artifacts:
                - name: a
                  kind: file
                  source: {file: a.txt}
        """

    @Test func validSpecLoads() throws {
        let spec = try load(valid)
        #expect(spec.components.first?.artifacts.first?.roles == ["all"])
        #expect(spec.kubernetesVersion == "v1.34.3")
    }

    @Test func syntaxErrorHasFileLineColumn() {
        let p = problems("apiVersion: x\nkind: [unclosed\nspec: 1\n")
        #expect(p.count == 1)
        #expect(p.first?.location?.line == 3)
        #expect(p.first?.location?.file.hasSuffix("spec.yaml") == true)
        #expect(p.first?.message.contains("YAML syntax error") == true)
    }

    @Test func everyProblemIsReportedWithItsPosition() {
        let text = """
            apiVersion: appliance.dev/v1alpha1
            kind: BundleSpec
            metadata: {name: t}
            spec:
              version: 1.0.0
              kubernetes: {version: 1.34}
              components:
                - name: c
                  version: "1"
                  artifacts:
                    - name: a
                      kind: tarball
                      source: {file: a.txt}
                    - name: b
                      kind: image
                      roles: [gpu-workers]
                      source: {file: b.txt}
                    - name: c
                      kind: file
                      sourc: {file: c.txt}
            """
        let p = problems(text)
        let byLine = Dictionary(grouping: p, by: { $0.location?.line ?? 0 })
        #expect(byLine[6]?.first?.message.contains("v1.34.3") == true)  // k8s version format
        #expect(byLine[12]?.first?.message.contains("must be one of deb, binary, image, chart, file") == true)
        #expect(byLine[16]?.first?.message.contains("unknown role 'gpu-workers'") == true)
        #expect(byLine[17]?.first?.message.contains("gives kind file or binary, not 'image'") == true)
        #expect(byLine[20]?.first?.message.contains("unknown field 'sourc'") == true)
        #expect(byLine[20]?.first?.message.contains("did you mean 'source'") == true)
        #expect(p.contains { $0.message.contains("missing required field 'source'") })
        #expect(p.count == 6, "\(p)")
    }

    @Test func missingTopLevelFields() {
        let p = problems(
            "apiVersion: appliance.dev/v1alpha1\nkind: BundleSpec\nmetadata: {name: t}\nspec:\n  version: 1\n")
        #expect(p.contains { $0.message == "missing required field 'kubernetes' in 'spec'" && $0.location?.line == 5 })
        #expect(p.contains { $0.message == "missing required field 'components' in 'spec'" })
    }

    @Test func duplicateKeysAndNamesAreRefused() {
        let text = valid.replacingOccurrences(of: "  version: 1.0.0\n", with: "  version: 1.0.0\n  version: 2.0.0\n")
        #expect(problems(text).contains { $0.message.contains("duplicate key 'version'") && $0.location?.line == 5 })
    }

    @Test func buildReportsAMissingSourceFileByArtifact() throws {
        let dir = TempDir()
        let path = dir.file("spec.yaml")
        try valid.write(toFile: path, atomically: true, encoding: .utf8)
        let spec = try BundleSpec.load(path: path)
        let error = #expect(throws: BundleError.self) {
            try BundleBuilder(spec: spec, signingKey: nil, debCacheDirectory: dir.file("c")).build(
                output: dir.file("o.tar"))
        }
        #expect(error?.message.hasPrefix("artifact 'a':") == true)
        #expect(!FileManager.default.fileExists(atPath: dir.file("o.tar")))
    }
}
