import Foundation

/// `kubectl drain NODE [--ignore-daemonsets] [--delete-emptydir-data] [--force] [--timeout D]
/// [--disable-eviction] [--dry-run=server] [--grace-period N]`, with kubectl's messages. Evictions that a
/// PodDisruptionBudget blocks are retried every 5 s (`APPLIANCE_LAB_DRAIN_RETRY` seconds in the lab) until
/// the timeout (default: none).
struct Drain {
    let kubectl: Kubectl
    let client: KubeClient
    let flags: Flags

    func run() throws -> ToolOutput {
        guard let nodeName = flags.positional.first else { throw Kubectl.Err(text: "error: USAGE: drain NODE [flags]") }
        let dry = flags.value("dry-run") == "server"
        let suffix = dry ? " (server dry run)" : ""
        let nodes = KResource.nodes, pods = KResource.pods
        guard let node = try client.get(nodes, nil, nodeName) else {
            throw Kubectl.Err(text: "Error from server (NotFound): nodes \"\(nodeName)\" not found")
        }
        var out = ""
        var err = ""
        if K.spec(node)["unschedulable"] as? Bool == true {
            out += "node/\(nodeName) already cordoned\(suffix)\n"
        } else {
            _ = try client.patch(nodes, nil, nodeName, ["spec": ["unschedulable": true]], dryRun: dry)
            out += "node/\(nodeName) cordoned\(suffix)\n"
        }
        let onNode = try client.list(pods, nil, query: "fieldSelector=spec.nodeName%3D\(nodeName)")
        var daemonSet: [String] = [], local: [String] = [], unmanaged: [String] = []
        var toEvict: [KObject] = []
        for p in onNode {
            let id = "\(K.namespace(p))/\(K.name(p))"
            if K.annotations(p)["kubernetes.io/config.mirror"] != nil { continue }
            let phase = K.get(p, "status.phase") as? String
            if phase == "Succeeded" || phase == "Failed" { toEvict.append(p); continue }
            let ctl = K.controller(p)
            if ctl?["kind"] as? String == "DaemonSet" { daemonSet.append(id); continue }
            if (K.spec(p)["volumes"] as? [KObject] ?? []).contains(where: { $0["emptyDir"] != nil }),
                !flags.has("delete-emptydir-data")
            {
                local.append(id)
            }
            if ctl == nil && !flags.has("force") { unmanaged.append(id) }
            toEvict.append(p)
        }
        var problems: [String] = []
        if !daemonSet.isEmpty && !flags.has("ignore-daemonsets") {
            problems.append(
                "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): "
                    + daemonSet.joined(separator: ", "))
        }
        if !local.isEmpty {
            problems.append(
                "cannot delete Pods with local storage (use --delete-emptydir-data to override): "
                    + local.joined(separator: ", "))
        }
        if !unmanaged.isEmpty {
            problems.append(
                "cannot delete Pods that declare no controller (use --force to override): "
                    + unmanaged.joined(separator: ", "))
        }
        if !problems.isEmpty {
            let text = problems.joined(separator: ", ")
            err +=
                "error: unable to drain node \"\(nodeName)\" due to error: \(text), continuing command...\nThere are pending nodes to be drained:\n \(nodeName)\n"
                + problems.joined(separator: "\n") + "\n"
            return ToolOutput(stdout: out, stderr: err, exitCode: 1)
        }
        if !daemonSet.isEmpty {
            err += "Warning: ignoring DaemonSet-managed Pods: " + daemonSet.joined(separator: ", ") + "\n"
        }
        if flags.has("force") && !unmanaged.isEmpty {
            err += "Warning: deleting Pods that declare no controller: " + unmanaged.joined(separator: ", ") + "\n"
        }

        let timeout = flags.value("timeout").flatMap(KubeadmConfigParser.parseDuration) ?? 0
        let deadline = timeout > 0 ? Date().addingTimeInterval(timeout) : Date.distantFuture
        let retry = Double(kubectl.context.environment["APPLIANCE_LAB_DRAIN_RETRY"] ?? "") ?? 5
        var pending = toEvict
        for p in pending { out += "evicting pod \(K.namespace(p))/\(K.name(p))\(suffix)\n" }
        var evicted: [KObject] = []
        while !pending.isEmpty {
            var still: [KObject] = []
            for p in pending {
                let ns = K.namespace(p), name = K.name(p)
                if flags.has("disable-eviction") {
                    try? client.delete(pods, ns, name, dryRun: dry)
                    evicted.append(p)
                    continue
                }
                let body: KObject = [
                    "apiVersion": "policy/v1", "kind": "Eviction", "metadata": ["name": name, "namespace": ns],
                ]
                let (status, obj) = try client.raw(
                    "POST", pods.path(namespace: ns, name: name) + "/eviction" + (dry ? "?dryRun=All" : ""), body)
                if status == 429 {
                    err +=
                        "error when evicting pods/\"\(name)\" -n \"\(ns)\" (will retry after \(Int(retry))s): \(obj["message"] as? String ?? "Too Many Requests")\n"
                    still.append(p)
                } else if status == 404 {
                    evicted.append(p)
                } else if !(200..<300).contains(status) {
                    err +=
                        "error when evicting pods/\"\(name)\" -n \"\(ns)\": \(obj["message"] as? String ?? "status \(status)")\n"
                    return ToolOutput(
                        stdout: out,
                        stderr: err
                            + "error: unable to drain node \"\(nodeName)\" due to error: [error when evicting pods/\"\(name)\" -n \"\(ns)\": \(obj["message"] as? String ?? "")], continuing command...\nThere are pending nodes to be drained:\n \(nodeName)\n",
                        exitCode: 1)
                } else {
                    evicted.append(p)
                }
            }
            pending = still
            if pending.isEmpty { break }
            if Date().addingTimeInterval(retry) > deadline {
                // kubectl's global timeout ends the retry wait itself: the drain fails at the deadline, not
                // one retry period early.
                Thread.sleep(forTimeInterval: max(0, deadline.timeIntervalSinceNow))
                let secs = Int(timeout)
                let list = pending.map {
                    "error when evicting pods/\"\(K.name($0))\" -n \"\(K.namespace($0))\": global timeout reached: \(secs)s"
                }
                err +=
                    "error: unable to drain node \"\(nodeName)\" due to error: [\(list.joined(separator: ", "))], continuing command...\nThere are pending nodes to be drained:\n \(nodeName)\n"
                    + list.joined(separator: "\n") + "\n"
                return ToolOutput(stdout: out, stderr: err, exitCode: 1)
            }
            Thread.sleep(forTimeInterval: retry)
        }
        for p in evicted {
            out += "pod/\(K.name(p)) \(flags.has("disable-eviction") ? "deleted" : "evicted")\(suffix)\n"
        }
        out += "node/\(nodeName) drained\(suffix)\n"
        return ToolOutput(stdout: out, stderr: err)
    }
}
