import ApplianceBundle
import ApplianceModel
import Foundation
import Logging
import Testing

@testable import ApplianceLab

/// The whole signed lab bundle (`bundles/lab.yaml`: Debian packages with their closure, the stand-in packages of
/// this checkout's static `appliance-labnode`, the lab images, the CNI manifest), built once per test process
/// with the lab's own builder, and the public key that verifies it.
struct FullLabBundle: Sendable {
    let path: String
    let publicKey: String

    static let built: Result<FullLabBundle, StandInSetupFailure> = {
        do {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lab-bundle-\(getpid())").path
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let key = try Ed25519Key.generate()
            let pub = dir + "/lab.pub"
            try key.publicKeyPEM().write(to: URL(fileURLWithPath: pub))
            let bundle = LabBundle(
                specPath: packageRoot + "/bundles/lab.yaml", labnode: try staticLabnode.get(),
                debCacheDirectory: StateDirectory.path() + "/cache/debs", logger: Logger(label: "lab-test"))
            _ = try bundle.build(output: dir + "/lab.tar", signingKey: key)
            return .success(FullLabBundle(path: dir + "/lab.tar", publicKey: pub))
        } catch { return .failure(.init(description: "\(error)")) }
    }()
}

/// The real `appliance` binary of this checkout, run with its own state directory.
struct ApplianceCLI {
    static let binary = packageRoot + "/.build/debug/appliance"
    let state: String

    func run(_ args: [String]) throws -> HostCommand.Result {
        try HostCommand.run(
            "/usr/bin/env", ["APPLIANCE_STATE_DIR=\(state)", "NO_COLOR=1", Self.binary] + args, check: false)
    }
}

extension RealLabSuites {
    @Suite("appliance install on lab nodes (issue 11)", .tags(.lab), .serialized)
    struct LabInstallTests {
        @Test(
            "3 control planes behind a virtual IP and 2 workers: installed and Ready with roles; install again changes nothing; no join token in the state directory; the API answers through the VIP with the first control plane off",
            .enabled(if: labSkipReason() == nil, "\(labSkipReason() ?? "")"),
            .enabled(
                if: FileManager.default.isExecutableFile(atPath: ApplianceCLI.binary),
                "the appliance binary is not built (swift build)"))
        func highlyAvailable() throws {
            let bundle = try FullLabBundle.built.get()
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lab-i1-\(getpid())").path
            let config = try LabConfig(id: "i1", subnet: "10.77.140", directory: dir + "/lab")
            let lab = Lab(config: config, logger: Logger(label: "lab-test"))
            _ = try? lab.down()
            defer {
                _ = try? lab.down()
                try? FileManager.default.removeItem(atPath: dir)
            }
            let state = try lab.up(.init(profile: "lab", nodes: 5, controlPlanes: 3, diskSizeMiB: 1024)).state
            let ssh = lab.ssh(state)
            let cli = ApplianceCLI(state: dir + "/state")
            let install = ["install", "-i", config.sitePath, "--bundle", bundle.path, "--trust", bundle.publicKey]

            let first = try cli.run(install)
            #expect(first.status == 0, "\(first.combined.suffix(6000))")
            #expect(first.stdout.contains("installed appliance-lab"), "\(first.stdout)")

            // Every node Ready, with its role labels; control planes keep their taint.
            let cp1 = try state.node("cp-1").address
            let nodes = try ssh.run(address: cp1, "kubectl --kubeconfig=/etc/kubernetes/admin.conf get nodes -o json")
            let list = try #require(try JSONSerialization.jsonObject(with: Data(nodes.stdout.utf8)) as? [String: Any])
            let items = try #require(list["items"] as? [[String: Any]])
            #expect(items.count == 5)
            for item in items {
                let meta = item["metadata"] as? [String: Any] ?? [:]
                let name = meta["name"] as? String ?? "?"
                let labels = meta["labels"] as? [String: String] ?? [:]
                let conditions = (item["status"] as? [String: Any])?["conditions"] as? [[String: Any]] ?? []
                #expect(
                    conditions.contains { $0["type"] as? String == "Ready" && $0["status"] as? String == "True" },
                    "\(name) not Ready")
                for role in try state.node(name).roles {
                    #expect(labels["node-role.kubernetes.io/\(role.rawValue)"] != nil, "\(name): \(labels)")
                }
                if name.hasPrefix("cp-") {
                    let taints = (item["spec"] as? [String: Any])?["taints"] as? [[String: Any]] ?? []
                    #expect(taints.contains { $0["key"] as? String == "node-role.kubernetes.io/control-plane" })
                }
            }
            // The registry's images came from the node's own store, and every node pulled through its mirror.
            let pulled = try ssh.run(address: try state.node("gpu-2").address, "ctr -n k8s.io images ls -q")
            #expect(pulled.stdout.contains("registry.k8s.io/pause:3.10.1"), "\(pulled.stdout)")

            // Secrets: the cluster's real bootstrap tokens appear nowhere in this host's state (journal, logs,
            // parameters, reports), nor in what install printed.
            let secrets = try ssh.run(
                address: cp1,
                "kubectl --kubeconfig=/etc/kubernetes/admin.conf -n kube-system get secrets -o json")
            let tokens = try Self.bootstrapTokens(secrets.stdout)
            #expect(!tokens.isEmpty, "no bootstrap token found in the cluster")
            let leaks = try Self.files(containingAny: tokens, under: dir + "/state", except: ["admin.conf"])
            #expect(leaks.isEmpty, "a join token is written in \(leaks)")
            #expect(!tokens.contains { first.combined.contains($0) })

            // Install again: every step is checked on the nodes and found done.
            let again = try cli.run(install)
            #expect(again.status == 0, "\(again.combined.suffix(4000))")
            #expect(again.stdout.contains("nothing to change"), "\(again.stdout)")

            // The first control plane loses power: keepalived moves the virtual IP and the API answers there.
            _ = try lab.fault(node: "cp-1", kind: .powerOff)
            let cp2 = try state.node("cp-2").address
            var answered = false
            for _ in 0..<30 where !answered {
                let r = try ssh.run(
                    address: cp2,
                    "kubectl --kubeconfig=/etc/kubernetes/admin.conf get --raw /readyz --request-timeout=5s",
                    check: false)
                answered = r.status == 0 && r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "ok"
                if !answered { sleep(2) }
            }
            #expect(answered, "the API does not answer through the virtual IP with cp-1 off")
            let endpoint = try ssh.run(address: cp2, "grep server: /etc/kubernetes/admin.conf")
            #expect(endpoint.stdout.contains("https://\(config.virtualIP):8443"), "\(endpoint.stdout)")
        }

        /// `ID.SECRET` of every bootstrap token Secret in a SecretList.
        static func bootstrapTokens(_ json: String) throws -> [String] {
            let list = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
            let items = list["items"] as? [[String: Any]] ?? []
            return items.compactMap { item -> String? in
                guard (item["type"] as? String) == "bootstrap.kubernetes.io/token",
                    let data = item["data"] as? [String: String],
                    let id = data["token-id"].flatMap({ Data(base64Encoded: $0) }),
                    let secret = data["token-secret"].flatMap({ Data(base64Encoded: $0) })
                else { return nil }
                return String(decoding: id, as: UTF8.self) + "." + String(decoding: secret, as: UTF8.self)
            }
        }

        /// Files under `root` whose bytes contain any of `needles` (or their secret halves).
        static func files(containingAny needles: [String], under root: String, except: [String]) throws -> [String] {
            var found: [String] = []
            let all = needles + needles.compactMap { $0.split(separator: ".").last.map(String.init) }
            let walker = FileManager.default.enumerator(atPath: root)
            while let rel = walker?.nextObject() as? String {
                let path = root + "/" + rel
                var isDir: ObjCBool = false
                guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue,
                    !except.contains((rel as NSString).lastPathComponent),
                    let data = FileManager.default.contents(atPath: path)
                else { continue }
                if all.contains(where: { data.range(of: Data($0.utf8)) != nil }) { found.append(rel) }
            }
            return found
        }
    }
}
