import Foundation

/// `GET /api/v1/namespaces/NS/pods/NAME/log` (`kubectl logs`), as kube-apiserver serves it: the pod and its
/// container are checked here with the API server's messages (an unknown pod is a 404 Status; a pod of several
/// containers needs `container`, a name it does not have is refused, as is a pod not bound to a node or a
/// container still waiting to start, each a 400), then the log is fetched from the kubelet of the pod's node
/// (`https://<InternalIP>:<kubelet port>/containerLogs/NS/NAME/CONTAINER`, `Kubelet+Logs.swift`) with the API
/// server's kubelet client certificate, passing on `tailLines`, `limitBytes` and `previous`, and returned as
/// plain text. `follow` is not streamed: the log as it stands is returned and the stream ends.
extension APIServerStandin {
    /// The pod and name of a log request's path, nil when the path is not one.
    static func logTarget(_ path: String) -> (namespace: String, pod: String)? {
        let c = path.split(separator: "/").map(String.init)
        guard c.count == 7, c[0] == "api", c[1] == "v1", c[2] == "namespaces", c[4] == "pods", c[6] == "log" else {
            return nil
        }
        return (c[3], c[5])
    }

    func podLog(namespace ns: String, pod name: String, query: [String: String]) throws -> HTTPReply {
        for key in ["tailLines", "limitBytes"] {
            if let v = query[key], Int(v) == nil {
                return reply(
                    Self.status(400, "BadRequest", "\(key): Invalid value: \"\(v)\": must be an integer"))
            }
        }
        guard let (pod, _) = try get(Self.pods, ns, name) else { return reply(notFound(Self.pods, name)) }
        let containers = (K.spec(pod)["containers"] as? [KObject] ?? []).compactMap { $0["name"] as? String }
        let inits = (K.spec(pod)["initContainers"] as? [KObject] ?? []).compactMap { $0["name"] as? String }
        let container: String
        if let c = query["container"], !c.isEmpty {
            guard containers.contains(c) || inits.contains(c) else {
                return reply(Self.status(400, "BadRequest", "container \(c) is not valid for pod \(name)"))
            }
            container = c
        } else if containers.count == 1 {
            container = containers[0]
        } else {
            var message =
                "a container name must be specified for pod \(name), choose one of: [\(containers.joined(separator: " "))]"
            if !inits.isEmpty { message += " or one of the init containers: [\(inits.joined(separator: " "))]" }
            return reply(Self.status(400, "BadRequest", message))
        }
        guard let nodeName = K.spec(pod)["nodeName"] as? String, !nodeName.isEmpty else {
            return reply(Self.status(400, "BadRequest", "pod \(name) does not have a host assigned"))
        }
        let statuses =
            (K.status(pod)["containerStatuses"] as? [KObject] ?? [])
            + (K.status(pod)["initContainerStatuses"] as? [KObject] ?? [])
        if let st = statuses.first(where: { $0["name"] as? String == container }),
            let waiting = K.get(st, "state.waiting") as? KObject
        {
            let reason = waiting["reason"] as? String ?? "ContainerCreating"
            return reply(
                Self.status(
                    400, "BadRequest", "container \"\(container)\" in pod \"\(name)\" is waiting to start: \(reason)"))
        } else if statuses.isEmpty {
            return reply(
                Self.status(
                    400, "BadRequest",
                    "container \"\(container)\" in pod \"\(name)\" is waiting to start: ContainerCreating"))
        }
        guard let (node, _) = try get(Self.nodes, nil, nodeName),
            let ip = (K.status(node)["addresses"] as? [KObject] ?? []).first(where: {
                $0["type"] as? String == "InternalIP"
            })?["address"] as? String
        else {
            return reply(Self.status(500, "InternalError", "no preferred addresses found for node \(nodeName)"))
        }
        guard let kubeletClient else {
            return reply(
                Self.status(
                    500, "InternalError",
                    "the API server has no kubelet client certificate (--kubelet-client-certificate)"
                ))
        }
        let port = K.get(node, "status.daemonEndpoints.kubeletEndpoint.Port") as? Int ?? Kubelet.port
        var items: [String] = []
        for key in ["tailLines", "limitBytes", "previous"] {
            if let v = query[key] { items.append("\(key)=\(v)") }
        }
        let url =
            "https://\(ip):\(port)/containerLogs/\(ns)/\(name)/\(container)"
            + (items.isEmpty ? "" : "?" + items.joined(separator: "&"))
        let answer: HTTPResponse
        do {
            answer = try HTTPClient.request("GET", url, timeout: 30, connectTimeout: 5, tls: kubeletClient)
        } catch {
            return reply(Self.status(500, "InternalError", "Get \"\(url)\": \(error)"))
        }
        guard answer.status == 200 else {
            let reason = answer.status == 400 ? "BadRequest" : answer.status == 404 ? "NotFound" : "InternalError"
            return reply(
                Self.status(answer.status, reason, answer.text.trimmingCharacters(in: .whitespacesAndNewlines)))
        }
        return .full(status: 200, contentType: "text/plain", body: answer.body)
    }
}
