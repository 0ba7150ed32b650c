import ApplianceModel
import Foundation
import Testing

@testable import ApplianceLabNode

/// The CloudNativePG model (operator in the API server stand-in, instance in the kubelet) and pod logs, in a
/// stand-in cluster of real processes on loopback: a real PostgreSQL serves the Cluster, a Job's `psql` answers
/// through the `-rw` Service with the `-app` Secret's URI (the database smoke test), and the real kubectl reads
/// pod logs through the API server and the kubelet.
@Suite("CloudNativePG model and pod logs in a stand-in cluster", .serialized)
struct CNPGClusterTests {
    static let operatorDeployment = """
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: cloudnative-pg, namespace: cnpg-system, labels: {app.kubernetes.io/name: cloudnative-pg}}
        spec:
          replicas: 1
          selector: {matchLabels: {app.kubernetes.io/name: cloudnative-pg}}
          template:
            metadata: {labels: {app.kubernetes.io/name: cloudnative-pg}}
            spec:
              containers: [{name: manager, image: registry.local/ghcr.io/cloudnative-pg/cloudnative-pg:1.30.0}]
        """
    static let cluster = """
        apiVersion: postgresql.cnpg.io/v1
        kind: Cluster
        metadata: {name: meta-cluster, namespace: db}
        spec:
          instances: 1
          imageName: registry.local/ghcr.io/cloudnative-pg/postgresql:16
          affinity: {nodeSelector: {kubernetes.io/hostname: sys-1}}
          bootstrap: {initdb: {database: meta, owner: keeper}}
        """
    static func job(_ name: String, key: String, sql: String) -> String {
        """
        apiVersion: batch/v1
        kind: Job
        metadata: {name: \(name), namespace: db}
        spec:
          backoffLimit: 0
          template:
            spec:
              restartPolicy: Never
              containers:
              - name: psql
                image: registry.local/ghcr.io/cloudnative-pg/postgresql:16
                command: [psql]
                args: ["$(DB_URI)", "-tAc", "\(sql)"]
                env:
                - name: DB_URI
                  valueFrom: {secretKeyRef: {name: meta-cluster-app, key: \(key)}}
        """
    }

    @Test(.tags(.realProcess)) func aClusterRunsARealPostgresAndAJobsPsqlAnswersLogsThroughTheRealKubectl() throws {
        for tool in [
            "/usr/bin/etcd", CNPGInstanceModel.binDirectory + "/postgres", "/usr/bin/psql", "/usr/bin/kubectl",
        ]
        where !FileManager.default.isExecutableFile(atPath: tool) {
            print("skipping: \(tool) not installed (scripts/bootstrap installs it)")
            return
        }
        let exe = try #require(LabFixture.executable, "appliance-labnode not built")
        let base = FileManager.default.temporaryDirectory.appendingPathComponent(
            "cnpgcluster-\(UUID().uuidString.prefix(8))"
        ).path
        let net = "127.\(Int.random(in: 100...250)).\(Int.random(in: 1...250))"
        var cpHW = LabFixture.hgxA100()
        cpHW.gpus = nil
        cpHW.roles = [.controlPlane]
        var sysHW = LabFixture.hgxA100()
        sysHW.gpus = nil
        sysHW.roles = [.system]
        let cp = try TestNode("cp-1", address: "\(net).1", base: base, exe: exe, hardware: cpHW)
        let sys = try TestNode("sys-1", address: "\(net).2", base: base, exe: exe, hardware: sysHW)
        defer {
            TestNode.stop([cp, sys].flatMap(\.daemonPIDs))
            try? FileManager.default.removeItem(atPath: base)
        }
        // postgres runs as its own user: the data directory's parents must be searchable.
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: base)
        let initRun = try cp.run("kubeadm", "init", "--pod-network-cidr=192.168.0.0/16")
        try #require(initRun.code == 0, "\(initRun.err)")
        let joinLine = try #require(
            initRun.out.split(separator: "\n").map(String.init).last { $0.hasPrefix("kubeadm join ") })
        let words = joinLine.split(whereSeparator: \.isWhitespace).map(String.init)
        let token = try #require(words.drop { $0 != "--token" }.dropFirst().first)
        let hashLine = try #require(
            initRun.out.split(separator: "\n").map(String.init).last { $0.contains("--discovery-token-ca-cert-hash") })
        let hash = try #require(
            hashLine.split(whereSeparator: \.isWhitespace).drop { $0 != "--discovery-token-ca-cert-hash" }.dropFirst()
                .first
                .map(String.init))
        let join = try sys.run(
            "kubeadm", "join", "\(cp.address):6443", "--token", token, "--discovery-token-ca-cert-hash", hash)
        try #require(join.code == 0, "\(join.err)")
        // The real kubectl, with the cluster's admin kubeconfig.
        let kubeconfig = cp.root + "/etc/kubernetes/admin.conf"
        func real(_ args: String...) throws -> (code: Int32, out: String, err: String) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/kubectl")
            p.arguments = ["--kubeconfig", kubeconfig] + args
            let o = Pipe(), e = Pipe()
            p.standardOutput = o
            p.standardError = e
            p.standardInput = FileHandle.nullDevice
            try p.run()
            let od = o.fileHandleForReading.readDataToEndOfFile()
            let ed = e.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return (p.terminationStatus, String(decoding: od, as: UTF8.self), String(decoding: ed, as: UTF8.self))
        }
        func apply(_ name: String, _ yaml: String) throws {
            try cp.write("/root/\(name).yaml", yaml)
            let r = try real("apply", "-f", cp.root + "/root/\(name).yaml")
            #expect(r.code == 0, "kubectl apply \(name): \(r.err)")
        }
        func object(_ args: String...) throws -> KObject {
            K.parse(Data(try real(arguments: args + ["-o", "json"]).out.utf8)) ?? [:]
        }
        func real(arguments: [String]) throws -> (code: Int32, out: String, err: String) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/kubectl")
            p.arguments = ["--kubeconfig", kubeconfig] + arguments
            let o = Pipe()
            p.standardOutput = o
            p.standardError = FileHandle.nullDevice
            try p.run()
            let od = o.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return (p.terminationStatus, String(decoding: od, as: UTF8.self), "")
        }
        #expect(try waitFor(30) { try real("get", "node", "sys-1").code == 0 })
        for ns in ["cnpg-system", "db"] {
            try apply("ns-\(ns)", "apiVersion: v1\nkind: Namespace\nmetadata: {name: \(ns)}")
        }
        try apply(
            "crd",
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: clusters.postgresql.cnpg.io}"
        )
        try apply("cluster", Self.cluster)
        Thread.sleep(forTimeInterval: 3)
        // No operator yet: nothing is made.
        #expect(try real("get", "secret", "-n", "db", "meta-cluster-app").code != 0)
        try apply("operator", Self.operatorDeployment)
        let healthy = try waitFor(90) {
            K.get(try object("get", "cluster", "-n", "db", "meta-cluster"), "status.phase") as? String
                == "Cluster in healthy state"
        }
        let status = K.status(try object("get", "cluster", "-n", "db", "meta-cluster"))
        let instance = try object("get", "pod", "-n", "db", "meta-cluster-1")
        try #require(healthy, "cluster status: \(status); pod: \(instance)")
        #expect(status["readyInstances"] as? Int == 1 && status["writeService"] as? String == "meta-cluster-rw")
        let pod = try object("get", "pod", "-n", "db", "meta-cluster-1")
        #expect(K.spec(pod)["nodeName"] as? String == "sys-1")
        #expect(K.labels(pod)["cnpg.io/instanceRole"] == "primary")
        for svc in ["rw", "ro", "r"] {
            #expect(try real("get", "service", "-n", "db", "meta-cluster-\(svc)").code == 0)
        }
        let secret = try object("get", "secret", "-n", "db", "meta-cluster-app")
        let data = (secret["data"] as? [String: String] ?? [:]).compactMapValues {
            Data(base64Encoded: $0).map { String(decoding: $0, as: UTF8.self) }
        }
        #expect(
            Set(data.keys).isSuperset(of: [
                "username", "password", "host", "port", "dbname", "uri", "jdbc-uri", "pgpass",
            ]))
        let password = try #require(data["password"])
        #expect(password.count == 64 && data["username"] == "keeper" && data["dbname"] == "meta")
        #expect(data["uri"] == "postgresql://keeper:\(password)@meta-cluster-rw.db:5432/meta")

        // The smoke test's Job: psql with the Secret's URI through the -rw Service, answering for real.
        try apply(
            "select", Self.job("smoke-database", key: "uri", sql: "SELECT current_user || '@' || current_database()"))
        let done = try waitFor(60) {
            K.status(try object("get", "job", "-n", "db", "smoke-database"))["succeeded"] as? Int == 1
        }
        let logs = try real("logs", "-n", "db", "job/smoke-database")
        let jobPods = try object("get", "pods", "-n", "db", "-l", "job-name=smoke-database")
        #expect(done, "job: \(jobPods); logs: \(logs)")
        #expect(logs.code == 0 && logs.out == "keeper@meta\n", "\(logs)")
        // A wrong password is refused by the server (the password is really checked).
        try cp.write(
            "/root/bad-secret.yaml",
            """
            apiVersion: v1
            kind: Secret
            metadata: {name: bad-uri, namespace: db}
            stringData: {uri: "postgresql://keeper:wrong@meta-cluster-rw.db:5432/meta"}
            """)
        #expect(try real("apply", "-f", cp.root + "/root/bad-secret.yaml").code == 0)
        try apply(
            "bad",
            Self.job("smoke-bad", key: "uri", sql: "SELECT 1").replacingOccurrences(
                of: "name: meta-cluster-app", with: "name: bad-uri"))
        #expect(
            try waitFor(60) { K.status(try object("get", "job", "-n", "db", "smoke-bad"))["failed"] as? Int == 1 })
        let refused = try real("logs", "-n", "db", "job/smoke-bad")
        #expect(refused.out.contains("password authentication failed for user \"keeper\""), "\(refused)")
        #expect(!refused.out.contains(password))

        // Pod logs as kube-apiserver serves them: the instance's log, --tail, errors.
        let server = try real("logs", "-n", "db", "meta-cluster-1")
        #expect(server.code == 0 && server.out.contains("database system is ready to accept connections"), "\(server)")
        #expect(!server.out.contains(password))
        let tail = try real("logs", "-n", "db", "meta-cluster-1", "--tail=1")
        #expect(tail.code == 0 && tail.out.split(separator: "\n").count == 1, "\(tail)")
        let unknown = try real("logs", "-n", "db", "nope")
        #expect(unknown.code != 0 && unknown.err.contains("pods \"nope\" not found"), "\(unknown)")
        let container = try real("logs", "-n", "db", "meta-cluster-1", "-c", "sidecar")
        #expect(
            container.code != 0 && container.err.contains("container sidecar is not valid for pod meta-cluster-1"),
            "\(container)")
        let previous = try real("logs", "-n", "db", "meta-cluster-1", "--previous")
        #expect(previous.code != 0 && previous.err.contains("previous terminated container"), "\(previous)")

        // Deleting the Cluster removes its pod, Services and Secret, and stops the server.
        #expect(try real("delete", "cluster", "-n", "db", "meta-cluster").code == 0)
        #expect(
            try waitFor(30) {
                let pod = try real("get", "pod", "-n", "db", "meta-cluster-1").code
                let secret = try real("get", "secret", "-n", "db", "meta-cluster-app").code
                return pod != 0 && secret != 0
            })
        #expect(
            waitFor(30) {
                !FileManager.default.fileExists(
                    atPath: sys.root + "/var/lib/postgresql/cnpg/db_meta-cluster-1/pgdata/postmaster.pid")
            })
    }
}

@Suite("Pod log selection and the CNPG model's objects")
struct PodLogAndCNPGModelTests {
    @Test func tailLinesAndLimitBytesAsTheKubeletAppliesThem() {
        let log = Data("a\nb\nc\n".utf8)
        func select(_ tail: Int?, _ limit: Int?) -> String {
            String(decoding: Kubelet.selectLog(log, tailLines: tail, limitBytes: limit), as: UTF8.self)
        }
        #expect(select(nil, nil) == "a\nb\nc\n")
        #expect(select(1, nil) == "c\n")
        #expect(select(2, nil) == "b\nc\n")
        #expect(select(10, nil) == "a\nb\nc\n")
        #expect(select(0, nil) == "")
        #expect(select(2, 3) == "b\nc")
        #expect(
            String(decoding: Kubelet.selectLog(Data("x\ny".utf8), tailLines: 1, limitBytes: nil), as: UTF8.self) == "y")
    }

    @Test func logPathsAreRecognised() {
        #expect(APIServerStandin.logTarget("/api/v1/namespaces/db/pods/p-1/log")! == ("db", "p-1"))
        #expect(APIServerStandin.logTarget("/api/v1/namespaces/db/pods/p-1") == nil)
        #expect(APIServerStandin.logTarget("/api/v1/namespaces/db/pods/p-1/status") == nil)
    }

    @Test func theAppSecretServicesAndInstancePodFollowCNPG() throws {
        let cluster: KObject = [
            "metadata": ["name": "platform-db-cluster", "namespace": "platform-db", "uid": "u1"] as KObject,
            "spec": [
                "instances": 1, "imageName": "r/ghcr.io/cloudnative-pg/postgresql:16",
                "affinity": [
                    "nodeSelector": ["node-role.kubernetes.io/system": ""],
                    "tolerations": [["key": "node-role.kubernetes.io/system", "operator": "Exists"]],
                ] as KObject,
            ] as KObject,
        ]
        #expect(CNPGModel.database(cluster) == ("app", "app"))
        let secret = CNPGModel.appSecret(cluster, password: "pw")
        let data = (secret["data"] as? [String: String] ?? [:]).compactMapValues {
            Data(base64Encoded: $0).map { String(decoding: $0, as: UTF8.self) }
        }
        #expect(K.name(secret) == "platform-db-cluster-app")
        #expect(data["uri"] == "postgresql://app:pw@platform-db-cluster-rw.platform-db:5432/app")
        #expect(
            data["jdbc-uri"] == "jdbc:postgresql://platform-db-cluster-rw.platform-db:5432/app?password=pw&user=app")
        #expect(data["pgpass"] == "platform-db-cluster-rw:5432:app:app:pw\n")
        #expect(data["host"] == "platform-db-cluster-rw" && data["port"] == "5432" && data["dbname"] == "app")
        #expect(
            CNPGModel.services(cluster).map(K.name) == [
                "platform-db-cluster-rw", "platform-db-cluster-ro", "platform-db-cluster-r",
            ])
        let pod = CNPGModel.instancePod(cluster, ordinal: 1)
        #expect(K.spec(pod)["nodeSelector"] as? [String: String] == ["node-role.kubernetes.io/system": ""])
        #expect((K.spec(pod)["tolerations"] as? [KObject])?.count == 1)
        #expect(CNPGInstanceModel.isInstance(pod))
        #expect(K.labels(CNPGModel.instancePod(cluster, ordinal: 2))["cnpg.io/instanceRole"] == "replica")
        let st = CNPGModel.status(cluster, pods: [pod], ready: { _ in false })
        #expect(st["phase"] as? String == "Setting up primary" && st["readyInstances"] as? Int == 0)
        #expect(
            CNPGModel.status(cluster, pods: [pod], ready: { _ in true })["phase"] as? String
                == "Cluster in healthy state")
        var owned = cluster
        K.set(&owned, ["spec", "bootstrap", "initdb"], ["database": "meta"])
        #expect(CNPGModel.database(owned) == ("meta", "meta"))
    }
}
