import ApplianceModel
import Foundation
import Testing
import Yams

@testable import AppliancePlatform

/// The smoke tests' Jobs (issue 13): golden files, and what each test relies on.
@Suite struct SmokeTestsTests {
    static func config(_ profile: String = "hpc-8xa100") throws -> PlatformConfiguration {
        try PlatformConfiguration.resolve(site: Fixtures.site(), profile: try Fixtures.profile(profile))
    }

    static func load(_ t: SmokeTest) throws -> [[String: Any]] {
        try Yams.load_all(yaml: t.document).compactMap { $0 as? [String: Any] }
    }

    static func get(_ o: Any?, _ path: String) -> Any? {
        var cur = o
        for p in path.split(separator: ".") {
            if let i = Int(p), let a = cur as? [Any] {
                cur = i < a.count ? a[i] : nil
            } else {
                cur = (cur as? [String: Any])?[String(p)]
            }
        }
        return cur
    }

    struct Missing: Error {}

    static func objects(_ byName: [String: SmokeTest], _ name: String) throws -> [[String: Any]] {
        guard let t = byName[name] else { throw Missing() }
        return try load(t)
    }

    static func first(_ byName: [String: SmokeTest], _ name: String) throws -> [String: Any] {
        guard let o = try objects(byName, name).first else { throw Missing() }
        return o
    }

    @Test(arguments: ["hpc-8xa100", "lab"])
    func golden(profileName: String) throws {
        let c = try Self.config(profileName)
        let tests = SmokeTests.all(c)
        #expect(tests.map(\.name) == ["gpu", "gpu-fraction", "gang", "gang-limit", "database", "object-store", "nfs"])
        for t in tests {
            Golden.check(t.document, "\(profileName)/smoke/\(t.name).yaml")
        }
        Golden.check(PlatformObjects.document(SmokeTests.queues()), "\(profileName)/smoke/queues.yaml")
    }

    @Test func everyImageComesFromTheSiteRegistry() throws {
        let c = try Self.config()
        for t in SmokeTests.all(c) {
            for o in try Self.load(t) where o["kind"] as? String == "Job" {
                let image = Self.get(o, "spec.template.spec.containers.0.image") as? String ?? ""
                #expect(image.hasPrefix(c.registry + "/"), "\(t.name): \(image)")
            }
        }
        #expect(
            SmokeTests.image(c, SmokeTests.cudaImage) == "\(c.registry)/nvcr.io/nvidia/cuda:12.9.1-base-ubuntu24.04")
    }

    @Test func theSchedulerTestsNameKAIAndTheirQueue() throws {
        let c = try Self.config()
        let byName = Dictionary(uniqueKeysWithValues: SmokeTests.all(c).map { ($0.name, $0) })
        for (name, queue) in [
            ("gpu", SmokeTests.queue), ("gpu-fraction", SmokeTests.queue), ("gang", SmokeTests.queue),
            ("gang-limit", SmokeTests.limitedQueue),
        ] {
            let t = try #require(byName[name])
            let job = try #require(try Self.load(t).first { $0["kind"] as? String == "Job" })
            #expect(Self.get(job, "spec.template.spec.schedulerName") as? String == "kai-scheduler")
            let labels = Self.get(job, "spec.template.metadata.labels") as? [String: Any]
            #expect(labels?["kai.scheduler/queue"] as? String == queue)
            #expect(t.release == "kai-scheduler")
        }
        let fraction = try Self.first(byName, "gpu-fraction")
        let annotations = Self.get(fraction, "spec.template.metadata.annotations") as? [String: Any]
        #expect(annotations?["gpu-fraction"] as? String == "0.5")
        let limits = Self.get(fraction, "spec.template.spec.containers.0.resources.limits") as? [String: Any]
        #expect(limits?["cpu"] != nil && limits?["nvidia.com/gpu"] == nil)
        for name in ["gang", "gang-limit"] {
            let job = try Self.first(byName, name)
            let a = Self.get(job, "metadata.annotations") as? [String: Any]
            #expect(a?["kai.scheduler/batch-min-member"] as? String == "2")
            #expect(Self.get(job, "spec.parallelism") as? Int == 2)
        }
        #expect(byName["gang-limit"]?.expectation == .staysPending(seconds: 20))
    }

    /// The limited queue admits exactly one GPU, under a parent with no limit; the queues are valid against the
    /// real CRD's fields (the same check as the site's queues).
    @Test func theSmokeQueues() throws {
        let queues = try Yams.load_all(yaml: PlatformObjects.document(SmokeTests.queues())).compactMap {
            $0 as? [String: Any]
        }
        #expect(
            queues.map { Self.get($0, "metadata.name") as? String ?? "" } == [
                "appliance-smoke", "appliance-smoke-gpu", "appliance-smoke-limited",
            ])
        #expect(Self.get(queues[2], "spec.resources.gpu.limit") as? Int == 1)
        #expect(Self.get(queues[2], "spec.parentQueue") as? String == "appliance-smoke")
        #expect(Self.get(queues[0], "spec.resources.gpu.limit") as? Int == -1)
        let allowed = Set(["displayName", "parentQueue", "resources", "priority"])
        for q in queues {
            #expect(Set((q["spec"] as? [String: Any] ?? [:]).keys).isSubset(of: allowed))
            #expect(q["apiVersion"] as? String == "scheduling.run.ai/v2")
        }
    }

    @Test func theDataServiceTests() throws {
        let c = try Self.config()
        let byName = Dictionary(uniqueKeysWithValues: SmokeTests.all(c).map { ($0.name, $0) })
        let db = try Self.first(byName, "database")
        #expect(Self.get(db, "metadata.namespace") as? String == "platform-db")
        #expect(
            Self.get(db, "spec.template.spec.containers.0.env.0.valueFrom.secretKeyRef.name") as? String
                == "platform-db-cluster-app")
        #expect(Self.get(db, "spec.template.spec.containers.0.args") as? [String] == ["$(DB_URI)", "-tAc", "SELECT 1"])
        let nfs = try Self.objects(byName, "nfs")
        #expect(nfs.first?["kind"] as? String == "PersistentVolumeClaim")
        #expect(Self.get(nfs.first, "spec.storageClassName") as? String == c.storage.datasetStorageClass)
        #expect(
            Self.get(nfs.last, "spec.template.spec.volumes.0.persistentVolumeClaim.claimName") as? String == "smoke-nfs"
        )
        let s3 = try Self.first(byName, "object-store")
        let script = (Self.get(s3, "spec.template.spec.containers.0.command") as? [String])?.last ?? ""
        #expect(
            script.contains("--aws-sigv4") && script.contains("-T object") && script.contains("cmp object returned"))
        // The keys reach curl through a config file, never its command line.
        #expect(script.contains("-K s3.curlrc") && !script.contains("--user") && !script.contains(" -u "))
        #expect(
            Self.get(s3, "spec.template.spec.containers.0.image") as? String == c.registry
                + "/docker.io/curlimages/curl:8.11.1")
        let env = Self.get(s3, "spec.template.spec.containers.0.env") as? [[String: Any]] ?? []
        #expect(
            env.compactMap { Self.get($0, "valueFrom.secretKeyRef.key") as? String } == [
                "admin_access_key_id", "admin_secret_access_key",
            ])
        for t in SmokeTests.all(c) {
            let job = try #require(try Self.load(t).first { $0["kind"] as? String == "Job" })
            #expect(Self.get(job, "spec.backoffLimit") as? Int == 0)
            #expect(Self.get(job, "spec.template.spec.restartPolicy") as? String == "Never")
            #expect((Self.get(job, "metadata.labels") as? [String: Any])?[SmokeTests.label] as? String == t.name)
        }
    }
}
