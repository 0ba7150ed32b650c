import ApplianceModel
import Foundation
import Testing
import Yams

@testable import AppliancePlatform

/// The scheduler's `Queue` objects validate against the real CRD's `openAPIV3Schema`
/// (`kai-scheduler-v0.16.8/crds/scheduling.run.ai_queues.yaml`) with Debian's python3-jsonschema.
@Suite struct QueueObjectTests {
    static var crdPath: String? {
        Fixtures.chartsDirectory.map {
            $0.appendingPathComponent("kai-scheduler-v0.16.8/crds/scheduling.run.ai_queues.yaml").path
        }
    }

    /// The v2 schema of the CRD as JSON, and the check of its group, kind and scope.
    static func schema() throws -> Data {
        let path = try #require(crdPath)
        let crd = try #require(try Yams.load(yaml: String(contentsOfFile: path, encoding: .utf8)) as? [String: Any])
        let spec = try #require(crd["spec"] as? [String: Any])
        #expect(spec["group"] as? String == "scheduling.run.ai")
        #expect(spec["scope"] as? String == "Cluster")
        #expect((spec["names"] as? [String: Any])?["kind"] as? String == "Queue")
        let versions = try #require(spec["versions"] as? [[String: Any]])
        let v2 = try #require(versions.first { $0["name"] as? String == "v2" })
        let schema = try #require((v2["schema"] as? [String: Any])?["openAPIV3Schema"])
        return try JSONSerialization.data(withJSONObject: schema)
    }

    static func json(_ t: YAMLTree) throws -> Data {
        try JSONSerialization.data(withJSONObject: try #require(try Yams.load(yaml: t.serialized())))
    }

    /// Validates each document; returns the error lines (empty: all valid).
    static func validate(_ docs: [Data]) throws -> [String] {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("queues-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try schema().write(to: dir.appendingPathComponent("schema.json"))
        var args: [String] = []
        for (i, d) in docs.enumerated() {
            let p = dir.appendingPathComponent("q\(i).json")
            try d.write(to: p)
            args.append(p.path)
        }
        let script = """
            import json, sys, jsonschema
            schema = json.load(open(sys.argv[1]))
            v = jsonschema.Draft4Validator(schema)
            bad = 0
            for f in sys.argv[2:]:
                for e in v.iter_errors(json.load(open(f))):
                    bad += 1
                    print(f.split("/")[-1], "/".join(map(str, e.path)), e.message[:200])
            sys.exit(1 if bad else 0)
            """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = ["-c", script, dir.appendingPathComponent("schema.json").path] + args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        let lines = out.split(separator: "\n").map(String.init)
        return p.terminationStatus == 0 ? [] : (lines.isEmpty ? ["python3 exited \(p.terminationStatus)"] : lines)
    }

    static var canValidate: Bool {
        guard crdPath.map({ FileManager.default.fileExists(atPath: $0) }) ?? false,
            FileManager.default.isExecutableFile(atPath: "/usr/bin/python3")
        else { return false }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = ["-c", "import jsonschema"]
        guard (try? p.run()) != nil else { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }

    @Test func queuesValidateAgainstTheRealCRD() throws {
        guard Self.canValidate else {
            print("skipped: the KAI reference CRD or python3-jsonschema is missing (run scripts/bootstrap)")
            return
        }
        let c = try PlatformConfiguration.resolve(site: Fixtures.site(), profile: Fixtures.profile("hpc-8xa100"))
        let queues = PlatformObjects.queues(c)
        #expect(queues.count == 3)
        let errors = try Self.validate(try queues.map(Self.json))
        #expect(errors.isEmpty, "\(errors)")
        // Parents come first, and children name them.
        let text = PlatformObjects.document(queues)
        let org = try #require(text.range(of: "name: org"))
        let teamA = try #require(text.range(of: "parentQueue: org"))
        #expect(org.lowerBound < teamA.lowerBound)
    }

    /// A Queue the schema refuses is caught (the validation could fail).
    @Test func aBrokenQueueIsRefusedByTheSchema() throws {
        guard Self.canValidate else { return }
        let broken: YAMLTree = .map([
            ("apiVersion", .string("scheduling.run.ai/v2")), ("kind", .string("Queue")),
            ("metadata", .map([("name", .string("x"))])),
            (
                "spec",
                .map([
                    ("priority", .string("high")),
                    ("resources", .map([("gpu", .map([("quota", .string("ten"))]))])),
                ])
            ),
        ])
        let errors = try Self.validate([try Self.json(broken)])
        #expect(errors.count == 2, "\(errors)")
    }

    @Test func namespacesCarryTheirLeafQueue() throws {
        let c = try PlatformConfiguration.resolve(site: Fixtures.site(), profile: Fixtures.profile("lab"))
        let text = PlatformObjects.document(PlatformObjects.namespaces(c))
        #expect(
            text.contains(
                "name: team-b-dev\n  labels:\n    app.kubernetes.io/managed-by: appliance\n    kai.scheduler/queue: team-b"
            ))
    }

    /// Without site queues the profile's queues become top-level queues.
    @Test func profileQueuesAreTheDefault() throws {
        var site = Fixtures.site()
        site.platform?.queues = []
        let c = try PlatformConfiguration.resolve(site: site, profile: Fixtures.profile("hpc-8xa100"))
        #expect(c.queues.map(\.name) == ["training", "research", "inference"])
        #expect(c.queues.map(\.gpuLimit) == [-1, -1, 8])
    }
}
