import Foundation
import Testing

/// Runs the real `appliance` binary and checks what a user sees: stdout, stderr and the exit code.
struct CLI {
    static let binary: String = {
        // The test bundle lives next to the built products.
        let products = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let candidate = products.appendingPathComponent("appliance").path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../.build/debug/appliance").standardized.path
    }()

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs the binary on a dedicated thread: waiting for a child process must never park one of Swift's
    /// cooperative threads (there are as many as cores), or other tests' timers starve.
    static func run(_ args: [String], state: String) async throws -> Result {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Result, Error>) in
            let t = Thread { c.resume(with: Swift.Result { try runBlocking(args, state: state) }) }
            t.start()
        }
    }

    private static func runBlocking(_ args: [String], state: String) throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        env["APPLIANCE_STATE_DIR"] = state
        env["NO_COLOR"] = "1"
        p.environment = env
        let out = Pipe()
        let err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Result(
            status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
            stderr: String(decoding: e, as: UTF8.self))
    }
}

@Suite(.serialized) struct CLITests {
    let dir = NSTemporaryDirectory() + "cli-" + UUID().uuidString

    init() throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    @Test func binaryIsBuilt() {
        #expect(FileManager.default.isExecutableFile(atPath: CLI.binary), "build first: swift build")
    }

    @Test func versionAndUsageErrors() async throws {
        let v = try await CLI.run(["--version"], state: dir)
        #expect(v.status == 0)
        #expect(v.stdout.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ".").count == 3)
        let bad = try await CLI.run(["bundle", "build", "-f", "x.yaml", "-o", "y.tar"], state: dir)
        #expect(bad.status == 2)
        #expect(bad.stderr.contains("--key"))
        let unknown = try await CLI.run(["bundle", "frobnicate"], state: dir)
        #expect(unknown.status == 2)
    }

    /// `appliance profile list | head -0`: the reader is gone before the first write; the command still ends
    /// normally (no crash on EPIPE).
    @Test func aClosedStdoutPipeIsNotACrash() async throws {
        let status = try await withCheckedThrowingContinuation { (c: CheckedContinuation<Int32, Error>) in
            Thread {
                c.resume(
                    with: Result {
                        let pipe = Pipe()
                        try pipe.fileHandleForReading.close()
                        let p = Process()
                        p.executableURL = URL(fileURLWithPath: CLI.binary)
                        p.arguments = ["profile", "list"]
                        p.environment = ProcessInfo.processInfo.environment.merging(["APPLIANCE_STATE_DIR": dir]) {
                            $1
                        }
                        p.standardOutput = pipe
                        p.standardError = FileHandle.nullDevice
                        try p.run()
                        try pipe.fileHandleForWriting.close()
                        p.waitUntilExit()
                        return p.terminationReason == .exit ? p.terminationStatus : -p.terminationStatus
                    })
            }.start()
        }
        #expect(status == 0)
    }

    @Test func keygenBuildVerifyAndTamperExitCodes() async throws {
        let keygen = try await CLI.run(["bundle", "keygen", "--out", dir + "/keys"], state: dir)
        #expect(keygen.status == 0)
        let attrs = try FileManager.default.attributesOfItem(atPath: dir + "/keys/appliance-signing.key")
        #expect((attrs[.posixPermissions] as? Int) == 0o600)
        // A second keygen does not overwrite the key.
        let again = try await CLI.run(["bundle", "keygen", "--out", dir + "/keys"], state: dir)
        #expect(again.status == 1)
        #expect(again.stderr.hasPrefix("error: "))

        try Data(repeating: 7, count: 5000).write(to: URL(fileURLWithPath: dir + "/blob.bin"))
        try """
        apiVersion: appliance.dev/v1alpha1
        kind: BundleSpec
        metadata: {name: cli}
        spec:
          version: 1.0.0
          kubernetes: {version: v1.34.3}
          components:
            - name: c
              version: "1"
              artifacts:
                - {name: blob, kind: file, source: {file: blob.bin}}
        """.write(toFile: dir + "/spec.yaml", atomically: true, encoding: .utf8)
        let build = try await CLI.run(
            [
                "bundle", "build", "-f", dir + "/spec.yaml", "-o", dir + "/b.tar", "--key",
                dir + "/keys/appliance-signing.key",
            ],
            state: dir)
        #expect(build.status == 0, "\(build.stderr)")
        let verify = try await CLI.run(
            ["bundle", "verify", dir + "/b.tar", "--trust", dir + "/keys/appliance-signing.pub", "--format", "json"],
            state: dir)
        #expect(verify.status == 0)
        let json = try JSONSerialization.jsonObject(with: Data(verify.stdout.utf8)) as? [String: Any]
        #expect(json?["verified"] as? Bool == true)
        // blob.bin and the bill of materials (issue 15), which every bundle carries.
        let insp = try await CLI.run(["bundle", "inspect", dir + "/b.tar", "--format", "json"], state: dir)
        let total = (try JSONSerialization.jsonObject(with: Data(insp.stdout.utf8)) as? [String: Any])?["totalBytes"]
        #expect(json?["bytesVerified"] as? Int == total as? Int)
        #expect((total as? Int ?? 0) > 5000)

        // No trust given: refused with exit 7, a hint, and the log file named.
        let untrusted = try await CLI.run(["bundle", "verify", dir + "/b.tar"], state: dir)
        #expect(untrusted.status == 7)
        #expect(untrusted.stderr.contains("which is not trusted"))
        #expect(untrusted.stderr.contains("hint: "))
        #expect(untrusted.stderr.contains("log: \(dir)/logs/"))
        #expect(untrusted.stdout.isEmpty)

        // A malformed spec: exit 1 with a positioned message.
        try "apiVersion: appliance.dev/v1alpha1\nkind: BundleSpec\nmetadata: {name: x}\nspec: {version: 1}\n"
            .write(toFile: dir + "/bad.yaml", atomically: true, encoding: .utf8)
        let bad = try await CLI.run(
            ["bundle", "build", "-f", dir + "/bad.yaml", "-o", dir + "/x.tar", "--unsigned"], state: dir)
        #expect(bad.status == 1)
        #expect(bad.stderr.contains("bad.yaml:4:7: missing required field 'kubernetes' in 'spec'"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/x.tar"))
    }

    @Test func inspectJSONHasStableFields() async throws {
        _ = try await CLI.run(["bundle", "keygen", "--out", dir + "/k2"], state: dir)
        try Data("x".utf8).write(to: URL(fileURLWithPath: dir + "/one.txt"))
        try """
        apiVersion: appliance.dev/v1alpha1
        kind: BundleSpec
        metadata: {name: insp}
        spec:
          version: 2.0.0
          upgradeFrom: [1.0.0]
          kubernetes: {version: v1.34.3}
          components:
            - name: c
              version: "1"
              artifacts:
                - {name: one, kind: file, roles: [gpu-worker], source: {file: one.txt}}
        """.write(toFile: dir + "/s2.yaml", atomically: true, encoding: .utf8)
        _ = try await CLI.run(
            ["bundle", "build", "-f", dir + "/s2.yaml", "-o", dir + "/i.tar", "--unsigned"], state: dir)
        let r = try await CLI.run(["bundle", "inspect", dir + "/i.tar", "--format", "json"], state: dir)
        #expect(r.status == 0)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(json["version"] as? String == "2.0.0")
        #expect(json["upgradeFrom"] as? [String] == ["1.0.0"])
        let comps = try #require(json["components"] as? [[String: Any]])
        let art = try #require((comps.first?["artifacts"] as? [[String: Any]])?.first)
        #expect(art["roles"] as? [String] == ["gpu-worker"])
        #expect(art["size"] as? Int == 1)
    }
}
