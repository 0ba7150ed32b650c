import ApplianceModel
import Foundation

@testable import ApplianceBundle

/// A spec with local sources only (no network), plus a key pair, in a temp dir.
struct SampleBundle {
    let dir = TempDir()
    let key: Ed25519Key
    let specPath: String

    init(blobs: [String: Data] = ["a.bin": Data(repeating: 1, count: 300_000), "b.bin": Data("hello\n".utf8)])
        throws
    {
        key = try Ed25519Key.generate()
        var artifacts = ""
        for (name, data) in blobs.sorted(by: { $0.key < $1.key }) {
            try data.write(to: URL(fileURLWithPath: dir.file(name)))
            artifacts += """
                        - name: \(name)
                          kind: file
                          roles: [all]
                          source: {file: \(name)}

                """
        }
        specPath = dir.file("spec.yaml")
        try """
        apiVersion: appliance.dev/v1alpha1
        kind: BundleSpec
        metadata: {name: test}
        spec:
          version: 1.1.0
          upgradeFrom: [1.0.0]
          kubernetes: {version: v1.34.3}
          components:
            - name: files
              version: "1"
              artifacts:
        \(artifacts)
        """.write(toFile: specPath, atomically: true, encoding: .utf8)
    }

    func build(_ name: String = "b.tar", signed: Bool = true) throws -> String {
        let spec = try BundleSpec.load(path: specPath)
        let out = dir.file(name)
        _ = try BundleBuilder(
            spec: spec, signingKey: signed ? key : nil, debCacheDirectory: dir.file("debs"),
            created: Date(timeIntervalSince1970: 1_700_000_000)
        ).build(output: out)
        return out
    }
}

/// Replaces the first occurrence of `needle` in a file (tampering tests).
func patch(_ path: String, replacing needle: Data, with replacement: Data) throws {
    var data = try Data(contentsOf: URL(fileURLWithPath: path))
    guard let r = data.range(of: needle) else { throw CocoaError(.fileReadCorruptFile) }
    data.replaceSubrange(r, with: replacement)
    try data.write(to: URL(fileURLWithPath: path))
}
