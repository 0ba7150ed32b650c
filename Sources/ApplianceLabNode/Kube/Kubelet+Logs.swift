import Foundation

/// The kubelet's log endpoint, which kube-apiserver calls for `GET .../pods/NAME/log` (`kubectl logs`):
/// `GET https://NODE-IP:10250/containerLogs/NS/POD/CONTAINER?tailLines=N&limitBytes=N&previous=true` over TLS,
/// the caller presenting a client certificate of the cluster CA (the API server's `apiserver-kubelet-client`).
/// The kubelet serves with its own client certificate (the real one has a self-signed serving certificate;
/// kube-apiserver does not verify it unless told to).
///
/// The log is the one the kubelet keeps for the container (`/var/log/pods/<ns>_<pod>_<uid>/<container>/0.log`,
/// written by the Job pod model and the CNPG instance model; the newest pod of that name when several uids
/// are on disk). A container that has no log file (the lab runs nothing for most pods) has an empty log. The lab
/// never restarts a container, so `previous=true` finds no previous container, as the kubelet says then.
extension Kubelet {
    static let port = 10250

    /// Starts the log endpoint (nil when it cannot: no credentials, or the port is taken, which is reported).
    func startLogServer(_ o: Options, kubeconfig: String) -> HTTPServer? {
        guard let cred = Kubeconfig.credentials(kubeconfig), let cert = cred.certificatePEM, let key = cred.keyPEM,
            let ca = cred.caPEM
        else {
            FileHandle.standardError.write(
                Data("W kubelet: no client certificate in the kubeconfig; the log endpoint is not served\n".utf8))
            return nil
        }
        let context = self.context
        do {
            return try HTTPServer(
                host: o.nodeIP, port: Self.port,
                tls: TLSServerIdentity(certificatePEM: cert, keyPEM: key, clientCAPEM: ca)
            ) { req in
                Kubelet.containerLogs(req, context: context)
            }
        } catch {
            FileHandle.standardError.write(
                Data("E kubelet: failed to serve the kubelet API on \(o.nodeIP):\(Self.port): \(error)\n".utf8))
            return nil
        }
    }

    static func text(_ status: Int, _ body: String) -> HTTPReply {
        .full(status: status, contentType: "text/plain; charset=utf-8", body: Data(body.utf8))
    }

    static func containerLogs(_ req: HTTPRequest, context: LabNodeContext) -> HTTPReply {
        guard req.clientCertificateVerified else { return text(401, "Unauthorized") }
        let parts = req.path.split(separator: "/").map(String.init)
        guard req.method == "GET", parts.count == 4, parts[0] == "containerLogs" else {
            return text(404, "404 page not found")
        }
        let (ns, pod, container) = (parts[1], parts[2], parts[3])
        if req.query["previous"] == "true" {
            return text(
                400, "previous terminated container \"\(container)\" in pod \"\(pod)\" not found")
        }
        let root = "/var/log/pods"
        let fm = FileManager.default
        let dirs = ((try? fm.contentsOfDirectory(atPath: context.path(root))) ?? []).filter {
            $0.hasPrefix("\(ns)_\(pod)_")
        }
        let newest = dirs.max { a, b in
            let da = (try? fm.attributesOfItem(atPath: context.path("\(root)/\(a)")))?[.modificationDate] as? Date
            let db = (try? fm.attributesOfItem(atPath: context.path("\(root)/\(b)")))?[.modificationDate] as? Date
            return (da ?? .distantPast) < (db ?? .distantPast)
        }
        guard let newest, let data = fm.contents(atPath: context.path("\(root)/\(newest)/\(container)/0.log")) else {
            return .full(status: 200, contentType: "text/plain", body: Data())
        }
        let body = selectLog(
            data, tailLines: req.query["tailLines"].flatMap { Int($0) },
            limitBytes: req.query["limitBytes"].flatMap { Int($0) })
        return .full(status: 200, contentType: "text/plain", body: body)
    }

    /// The last `tailLines` lines (all when nil or negative), then at most `limitBytes` bytes from the start of
    /// that, as the kubelet applies them.
    static func selectLog(_ data: Data, tailLines: Int?, limitBytes: Int?) -> Data {
        var out = data
        if let n = tailLines, n >= 0 {
            let bytes = [UInt8](data)
            var end = bytes.count
            // A final newline ends the last line; it does not start another.
            if end > 0, bytes[end - 1] == UInt8(ascii: "\n") { end -= 1 }
            var start = end
            var lines = 0
            if n == 0 {
                start = bytes.count
            } else {
                while start > 0 {
                    if bytes[start - 1] == UInt8(ascii: "\n") {
                        lines += 1
                        if lines == n { break }
                    }
                    start -= 1
                }
            }
            out = Data(bytes[start..<bytes.count])
        }
        if let limit = limitBytes, limit >= 0, out.count > limit { out = out.prefix(limit) }
        return out
    }
}
