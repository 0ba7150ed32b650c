import Foundation
import Logging

@testable import ApplianceBundle

/// Runs a command, returns (status, stdout+stderr).
@discardableResult
func runTool(_ path: String, _ args: [String], env: [String: String]? = nil, cwd: String? = nil) throws -> (
    Int32, String
) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    if let env { p.environment = env }
    if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    try p.run()
    let out = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: out, as: UTF8.self))
}

struct ToolFailed: Error, CustomStringConvertible {
    var description: String
}

/// What the registry tests need on this machine; a missing tool is a skip reason.
enum RegistryTools {
    static let registry = "/usr/bin/docker-registry"
    static let skopeo = "/usr/bin/skopeo"
    static let htpasswd = "/usr/bin/htpasswd"
    static let openssl = "/usr/bin/openssl"
    static let python = "/usr/bin/python3"

    static var missing: String? {
        let absent = [registry, skopeo, htpasswd, openssl, python].filter {
            !FileManager.default.isExecutableFile(atPath: $0)
        }
        return absent.isEmpty ? nil : "missing \(absent.joined(separator: ", ")) (run scripts/bootstrap)"
    }
}

/// A test CA, a server certificate for 127.0.0.1/localhost signed by it, and a token-signing certificate.
struct TestPKI {
    let dir: String
    var caCert: String { dir + "/ca.crt" }
    var serverCert: String { dir + "/server.crt" }
    var serverKey: String { dir + "/server.key" }
    var tokenCert: String { dir + "/token.crt" }
    var tokenKey: String { dir + "/token.key" }
    /// A directory with `ca.crt`, as skopeo's --cert-dir wants.
    var certDir: String { dir + "/certs.d" }

    init(dir: String) throws {
        self.dir = dir
        let o = RegistryTools.openssl
        try FileManager.default.createDirectory(atPath: dir + "/certs.d", withIntermediateDirectories: true)
        func run(_ args: [String]) throws {
            let (s, out) = try runTool(o, args, cwd: dir)
            if s != 0 { throw ToolFailed(description: "openssl \(args.joined(separator: " ")): \(out)") }
        }
        try run([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=appliance test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ])
        try run([
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj",
            "/CN=127.0.0.1",
        ])
        try "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n".write(
            toFile: dir + "/ext.cnf", atomically: true, encoding: .utf8)
        try run([
            "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out",
            "server.crt", "-days", "2", "-extfile", "ext.cnf",
        ])
        try run([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "token.key", "-out", "token.crt", "-days", "2",
            "-subj", "/CN=appliance test token issuer",
        ])
        try FileManager.default.copyItem(atPath: dir + "/ca.crt", toPath: dir + "/certs.d/ca.crt")
    }
}

/// A free loopback port (asked of the kernel through Python, so no socket code here).
func freeLoopbackPort() throws -> Int {
    let (s, out) = try runTool(
        RegistryTools.python,
        ["-c", "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])"])
    guard s == 0, let port = Int(out.trimmingCharacters(in: .whitespacesAndNewlines)) else {
        throw ToolFailed(description: "no free port: \(out)")
    }
    return port
}

/// A process started by a test, stopped (SIGTERM, then SIGKILL) by `stop()` or at deinit.
final class TestProcess: @unchecked Sendable {  // used from one test at a time
    let process = Process()
    let logPath: String

    init(_ path: String, _ args: [String], log: String, env: [String: String]? = nil) throws {
        logPath = log
        FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = args
        if let env { process.environment = env }
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Waits until the log contains `marker`.
    func waitFor(_ marker: String, seconds: Double = 20) throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if log.contains(marker) { return }
            if !process.isRunning { throw ToolFailed(description: "exited early: \(log)") }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw ToolFailed(description: "timed out waiting for '\(marker)': \(log)")
    }

    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    deinit { stop() }
}

/// A real CNCF distribution registry (Debian's docker-registry) on 127.0.0.1 with TLS from the test CA.
final class TestRegistry {
    enum Auth {
        case none
        case htpasswd(user: String, password: String)
        /// Token authentication; the token endpoint runs at `realm`.
        case token(realm: String)
    }

    let port: Int
    let storage: String
    let process: TestProcess
    var host: String { "127.0.0.1:\(port)" }

    init(dir: String, storage: String, pki: TestPKI, auth: Auth) throws {
        port = try freeLoopbackPort()
        self.storage = storage
        var authYAML = ""
        switch auth {
        case .none: break
        case .htpasswd(let user, let password):
            let (s, out) = try runTool(RegistryTools.htpasswd, ["-Bbn", user, password])
            guard s == 0 else { throw ToolFailed(description: "htpasswd: \(out)") }
            try out.write(toFile: dir + "/htpasswd-\(port)", atomically: true, encoding: .utf8)
            authYAML = "auth:\n  htpasswd:\n    realm: appliance-test\n    path: \(dir)/htpasswd-\(port)\n"
        case .token(let realm):
            authYAML =
                "auth:\n  token:\n    realm: \(realm)\n    service: appliance-test-registry\n    issuer: appliance-test-issuer\n    rootcertbundle: \(pki.tokenCert)\n"
        }
        let config = """
            version: 0.1
            log:
              level: info
              accesslog: {disabled: true}
            storage:
              filesystem: {rootdirectory: \(storage)}
              delete: {enabled: true}
            http:
              addr: 127.0.0.1:\(port)
              tls:
                certificate: \(pki.serverCert)
                key: \(pki.serverKey)
            \(authYAML)
            """
        let configPath = dir + "/registry-\(port).yml"
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
        process = try TestProcess(RegistryTools.registry, ["serve", configPath], log: dir + "/registry-\(port).log")
        try process.waitFor("listening on")
    }

    func stop() { process.stop() }
}

/// The tests' Python helpers: a TLS token endpoint (basic auth in, a signed JWT out, as the distribution
/// token spec describes) and a TCP proxy that cuts its first connection(s) after N bytes from upstream.
enum TestHelpers {
    static let script = #"""
        import asyncio, base64, json, os, ssl, subprocess, sys, time, uuid
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlparse, parse_qs

        def b64(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

        def token_server(port, cert, key, tokcert, tokkey, user, password, served):
            der = subprocess.run(["openssl", "x509", "-in", tokcert, "-outform", "DER"], check=True, capture_output=True).stdout
            class H(BaseHTTPRequestHandler):
                def log_message(self, *a): pass
                def do_GET(self):
                    want = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
                    if self.headers.get("Authorization") != want:
                        self.send_response(401); self.end_headers(); return
                    q = parse_qs(urlparse(self.path).query)
                    access = []
                    for scope in q.get("scope", []):
                        t, name, actions = scope.split(":")
                        access.append({"type": t, "name": name, "actions": actions.split(",")})
                    now = int(time.time())
                    header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
                    claims = {"iss": "appliance-test-issuer", "sub": user, "aud": q.get("service", [""])[0],
                              "exp": now + 600, "nbf": now - 60, "iat": now, "jti": str(uuid.uuid4()), "access": access}
                    signing = (b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())).encode()
                    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", tokkey], input=signing, check=True,
                                         capture_output=True).stdout
                    token = signing.decode() + "." + b64(sig)
                    with open(served, "a") as f: f.write(token + "\n")
                    body = json.dumps({"token": token, "expires_in": 600}).encode()
                    self.send_response(200); self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
            srv = ThreadingHTTPServer(("127.0.0.1", port), H)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(cert, key)
            srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
            print("token endpoint ready", flush=True)
            srv.serve_forever()

        def proxy(port, upstream_port, cut_after, cuts, stats):
            state = {"cuts": cuts, "total": 0}
            async def pipe(r, w, count, limit):
                sent = 0
                try:
                    while True:
                        data = await r.read(65536)
                        if not data: break
                        if limit is not None and sent + len(data) > limit:
                            w.write(data[: limit - sent]); await w.drain()
                            state["total"] += limit - sent
                            raise ConnectionResetError("cut")
                        sent += len(data)
                        if count: state["total"] += len(data)
                        w.write(data); await w.drain()
                        with open(stats, "w") as f: f.write(str(state["total"]))
                finally:
                    w.close()
            async def handle(cr, cw):
                ur, uw = await asyncio.open_connection("127.0.0.1", upstream_port)
                limit = None
                if state["cuts"] > 0:
                    state["cuts"] -= 1; limit = cut_after
                t1 = asyncio.ensure_future(pipe(cr, uw, False, None))
                t2 = asyncio.ensure_future(pipe(ur, cw, True, limit))
                done, pending = await asyncio.wait([t1, t2], return_when=asyncio.FIRST_EXCEPTION)
                for t in pending: t.cancel()
                cw.close(); uw.close()
                with open(stats, "w") as f: f.write(str(state["total"]))
            async def main():
                srv = await asyncio.start_server(handle, "127.0.0.1", port)
                print("proxy ready", flush=True)
                async with srv: await srv.serve_forever()
            asyncio.run(main())

        def static_server(port, cert, key, root):
            import functools
            from http.server import SimpleHTTPRequestHandler
            class S(SimpleHTTPRequestHandler):
                def log_message(self, *a): pass
            srv = ThreadingHTTPServer(("127.0.0.1", port), functools.partial(S, directory=root))
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(cert, key)
            srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
            print("static server ready", flush=True)
            srv.serve_forever()

        if sys.argv[1] == "token": token_server(int(sys.argv[2]), *sys.argv[3:9], sys.argv[9])
        elif sys.argv[1] == "static": static_server(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
        else: proxy(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
        """#

    static func write(_ dir: String) throws -> String {
        let path = dir + "/helpers.py"
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }
}

/// A log handler that keeps every message and its metadata (the redaction test searches them).
final class CapturingLog: @unchecked Sendable {  // `lines` is guarded by `lock`
    private let lock = NSLock()
    private var lines: [String] = []
    var text: String {
        lock.lock()
        defer { lock.unlock() }
        return lines.joined(separator: "\n")
    }
    func append(_ s: String) {
        lock.lock()
        lines.append(s)
        lock.unlock()
    }
    var logger: Logger {
        let sink = self
        var l = Logger(label: "test") { _ in CapturingHandler(sink: sink) }
        l.logLevel = .trace
        return l
    }
}

struct CapturingHandler: LogHandler {
    let sink: CapturingLog
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(
        level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String,
        function: String, line: UInt
    ) {
        sink.append("\(level) \(message) \(metadata ?? [:]) \(self.metadata)")
    }
}
