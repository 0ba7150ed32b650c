import Foundation

/// The kubelet's side of a CloudNativePG instance pod (`CNPGInstanceModel`).
extension Kubelet {
    /// Starts the instance of pod `p` once (a thread runs initdb, the server and the bootstrap; the heartbeat goes
    /// on). A pod whose Cluster or `-app` Secret is not there yet waits with the kubelet's reason.
    func startCNPGInstance(_ p: KObject, _ o: Options, client: KubeClient, now: Date) throws {
        let uid = K.meta(p)["uid"] as? String ?? K.name(p)
        guard CNPGInstances.shared.claim(uid) else { return }
        let ns = K.namespace(p), podName = K.name(p)
        let clusterName = K.labels(p)[CNPGModel.clusterLabel] ?? ""
        func wait(_ reason: String, _ message: String) throws {
            CNPGInstances.shared.release(uid)
            try postWaiting(p, o, client: client, now: now, reason: reason, message: message)
        }
        if K.labels(p)[CNPGModel.instanceRoleLabel] != "primary" {
            // Claimed for good: a replica is never started.
            try postWaiting(
                p, o, client: client, now: now, reason: "ContainerCreating",
                message:
                    "appliance lab: the CloudNativePG model runs the primary only; streaming replicas are not modelled")
            return
        }
        guard let cluster = try client.get(CNPGModel.resource, ns, clusterName) else {
            return try wait("CreateContainerConfigError", "clusters.postgresql.cnpg.io \"\(clusterName)\" not found")
        }
        guard let secret = try client.get(KResource.secrets, ns, "\(clusterName)-app"),
            let password = K.secretValue(secret, "password").map({ String(decoding: $0, as: UTF8.self) })
        else {
            return try wait("CreateContainerConfigError", "secret \"\(clusterName)-app\" not found")
        }
        let (database, owner) = CNPGModel.database(cluster)
        let base = context.path("/var/lib/postgresql/cnpg/\(ns)_\(podName)")
        var setup = CNPGInstanceModel.Setup(
            database: database, owner: owner, password: password, dataDirectory: base + "/pgdata",
            socketDirectory: base + "/run")
        setup.listenAddress = o.nodeIP
        let instance = setup
        let context = self.context
        let pod = PodBox(p)
        let t = Thread {
            let p = pod.pod
            let model = CNPGInstanceModel(context: context)
            let logPath = Kubelet.logPath(context: context, pod: p)
            FileManager.default.createFile(atPath: logPath, contents: nil, attributes: [.posixPermissions: 0o640])
            guard let log = FileHandle(forWritingAtPath: logPath) else {
                CNPGInstances.shared.release(uid)
                return
            }
            log.seekToEndOfFile()
            func fail(_ text: String, code: Int32) {
                log.write(Data((text + "\n").utf8))
                try? log.close()
                let outcome = JobPodModel.Outcome(exitCode: code, message: String(text.suffix(4096)), log: text)
                try? Kubelet.postTerminated(p, o, client: client, now: Date(), outcome: outcome)
                _ = CNPGInstances.shared.exited(uid)
            }
            let server: Process
            do {
                try model.initialise(instance)
                server = try model.start(instance, log: log)
            } catch {
                CNPGInstances.shared.release(uid)
                return fail("appliance lab: CloudNativePG instance \(ns)/\(K.name(p)): \(error)", code: 1)
            }
            CNPGInstances.shared.started(uid, server)
            do {
                try model.waitReady(instance, process: server)
                try model.bootstrap(instance)
                try Kubelet(context: context).postRunning(p, o, client: client, now: Date())
            } catch {
                if server.isRunning { kill(server.processIdentifier, SIGINT) }
                server.waitUntilExit()
                return fail("appliance lab: CloudNativePG instance \(ns)/\(K.name(p)): \(error)", code: 1)
            }
            server.waitUntilExit()
            if CNPGInstances.shared.exited(uid) {
                try? log.close()
                return
            }
            fail(
                "appliance lab: postgres exited with status \(server.terminationStatus)", code: server.terminationStatus
            )
        }
        t.start()
    }
}
