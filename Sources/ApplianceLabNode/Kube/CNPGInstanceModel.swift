import ApplianceModel
import Foundation

/// How the kubelet stand-in runs a CloudNativePG instance pod (a pod owned by a `postgresql.cnpg.io` Cluster
/// whose container runs the instance manager, `/controller/manager instance run`): the lab has no container
/// runtime, so it does what the instance manager does, with the node's real PostgreSQL (Debian's
/// `postgresql-15`, whatever the image's tag says):
///
/// - `initdb` of the data directory (on the node's disk, `/var/lib/postgresql/cnpg/<ns>_<pod>`; kept across a
///   restart of the pod of the same name), as the `postgres` user, authentication `scram-sha-256` over TCP and
///   `peer` on the local socket; PostgreSQL listening on the node's address (the pod's IP), port 5432;
/// - the server started as the pod's process, its output the container's log;
/// - the application database and its owner as `spec.bootstrap.initdb` says (`CNPGModel.database`), the owner's
///   password from the `<cluster>-app` Secret (set on every start, so the Secret and the server agree);
/// - Ready once the server accepts connections; stopped (fast shutdown) when the pod is deleted; a server that
///   exits marks the pod Failed with its exit code.
///
/// Only the primary (`<cluster>-1`) is run: a replica instance waits with a reason saying that the lab does not
/// model streaming replication. SQL that carries the password goes to psql on its standard input, never on a
/// command line or in a log.
public struct CNPGInstanceModel: Sendable {
    public let context: LabNodeContext
    public init(context: LabNodeContext) { self.context = context }

    public static let binDirectory = "/usr/lib/postgresql/15/bin"

    public static func isInstance(_ pod: KObject) -> Bool {
        guard let ref = K.controller(pod), ref["kind"] as? String == "Cluster",
            (ref["apiVersion"] as? String ?? "").hasPrefix(CNPGModel.group + "/")
        else { return false }
        let command = ((K.spec(pod)["containers"] as? [KObject])?.first?["command"] as? [String]) ?? []
        return Array(command.prefix(3)) == CNPGModel.managerCommand
    }

    /// What the instance needs from the API before it can start.
    public struct Setup: Sendable {
        public var database: String
        public var owner: String
        /// The owner's password (secret: never logged).
        public var password: String
        public var dataDirectory: String
        public var socketDirectory: String
        public var port: Int = CNPGModel.port
        /// `listen_addresses`: the node's address (the pod's IP in the lab).
        public var listenAddress = "*"
        public init(database: String, owner: String, password: String, dataDirectory: String, socketDirectory: String) {
            self.database = database
            self.owner = owner
            self.password = password
            self.dataDirectory = dataDirectory
            self.socketDirectory = socketDirectory
        }
    }

    public enum Failure: Error, CustomStringConvertible {
        case step(String, exitCode: Int32, output: String)
        case notReady(seconds: Int)
        public var description: String {
            switch self {
            case .step(let what, let code, let output):
                return "\(what) failed (exit \(code)): \(output.trimmingCharacters(in: .whitespacesAndNewlines))"
            case .notReady(let s): return "PostgreSQL did not accept connections within \(s) s"
            }
        }
    }

    /// A command's exit code and output.
    static func run(_ argv: [String], stdin: String? = nil) -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: argv[0])
        p.arguments = Array(argv.dropFirst())
        p.environment = ["PATH": JobPodModel.defaultPath, "LC_ALL": "C.UTF-8"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        let input = Pipe()
        p.standardInput = stdin == nil ? FileHandle.nullDevice : input
        do { try p.run() } catch { return (127, "cannot run \(argv[0]): \(error)") }
        if let stdin {
            input.fileHandleForWriting.write(Data(stdin.utf8))
            try? input.fileHandleForWriting.close()
        }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// `argv` as the `postgres` user (setpriv execs it: the server is the process itself, signals reach it).
    static func asPostgres(_ argv: [String]) -> [String] {
        ["/usr/bin/setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"] + argv
    }

    static func quoteLiteral(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "''") + "'" }
    static func quoteIdent(_ s: String) -> String { "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }

    /// `initdb` and the server's configuration, unless the data directory is already initialised.
    func initialise(_ s: Setup) throws {
        let fm = FileManager.default
        if fm.fileExists(atPath: s.dataDirectory + "/PG_VERSION") { return }
        guard fm.isExecutableFile(atPath: Self.binDirectory + "/initdb") else {
            let root =
                ProcFile.text("/proc/self/mountinfo")?.split(separator: "\n")
                .first { $0.split(separator: " ").dropFirst(4).first == "/" }.map(String.init) ?? "?"
            throw Failure.step(
                "initdb", exitCode: 127,
                output:
                    "this node has no PostgreSQL server (\(Self.binDirectory)/initdb; Debian's postgresql-15 is in the lab rootfs); rootfs: \((try? String(contentsOfFile: "/etc/lab-rootfs", encoding: .utf8)) ?? "?"); / is \(root)"
            )
        }
        for dir in [s.dataDirectory, s.socketDirectory] {
            try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        }
        for dir in [s.dataDirectory, s.socketDirectory] {
            let (code, out) = Self.run(["/bin/chown", "postgres:postgres", dir])
            if code != 0 { throw Failure.step("chown \(dir)", exitCode: code, output: out) }
            try fm.setAttributes([.posixPermissions: 0o700], ofItemAtPath: dir)
        }
        let (code, out) = Self.run(
            Self.asPostgres([
                Self.binDirectory + "/initdb", "-D", s.dataDirectory, "-U", "postgres", "--auth-local=peer",
                "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C",
            ]))
        if code != 0 { throw Failure.step("initdb", exitCode: code, output: out) }
        let conf = """

            # appliance lab: the CloudNativePG instance model
            listen_addresses = '\(s.listenAddress)'
            port = \(s.port)
            unix_socket_directories = '\(s.socketDirectory)'
            password_encryption = 'scram-sha-256'

            """
        let hba = """
            # appliance lab: the CloudNativePG instance model (CNPG's pg_hba: local peer, TCP with passwords)
            local all all peer
            host all all 0.0.0.0/0 scram-sha-256
            host all all ::/0 scram-sha-256

            """
        guard let h = FileHandle(forWritingAtPath: s.dataDirectory + "/postgresql.conf") else {
            throw Failure.step("write postgresql.conf", exitCode: 1, output: "cannot open it")
        }
        h.seekToEndOfFile()
        h.write(Data(conf.utf8))
        try h.close()
        try hba.write(toFile: s.dataDirectory + "/pg_hba.conf", atomically: false, encoding: .utf8)
    }

    /// Starts the server (the returned process; its output appended to `log`).
    func start(_ s: Setup, log: FileHandle) throws -> Process {
        let p = Process()
        let argv = Self.asPostgres([Self.binDirectory + "/postgres", "-D", s.dataDirectory])
        p.executableURL = URL(fileURLWithPath: argv[0])
        p.arguments = Array(argv.dropFirst())
        p.environment = ["PATH": JobPodModel.defaultPath, "LC_ALL": "C.UTF-8"]
        p.standardOutput = log
        p.standardError = log
        p.standardInput = FileHandle.nullDevice
        try p.run()
        return p
    }

    /// Waits until the server accepts connections on its socket.
    func waitReady(_ s: Setup, process: Process, seconds: Int = 60) throws {
        let deadline = Date().addingTimeInterval(Double(seconds))
        while Date() < deadline {
            if !process.isRunning {
                throw Failure.step("postgres", exitCode: process.terminationStatus, output: "exited while starting")
            }
            let (code, _) = Self.run(
                Self.asPostgres([
                    Self.binDirectory + "/pg_isready", "-h", s.socketDirectory, "-p", "\(s.port)", "-d", "postgres",
                    "-q",
                ]))
            if code == 0 { return }
            Thread.sleep(forTimeInterval: 0.5)
        }
        throw Failure.notReady(seconds: seconds)
    }

    /// The application owner (password set) and database, as the instance manager's bootstrap creates them.
    func bootstrap(_ s: Setup) throws {
        let role = Self.quoteIdent(s.owner), db = Self.quoteIdent(s.database)
        let sql = """
            SELECT 'CREATE ROLE \(role.replacingOccurrences(of: "'", with: "''")) LOGIN' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = \(Self.quoteLiteral(s.owner)))
            \\gexec
            ALTER ROLE \(role) WITH LOGIN PASSWORD \(Self.quoteLiteral(s.password));
            SELECT 'CREATE DATABASE \(db.replacingOccurrences(of: "'", with: "''")) OWNER \(role.replacingOccurrences(of: "'", with: "''"))' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = \(Self.quoteLiteral(s.database)))
            \\gexec

            """
        let (code, out) = Self.run(
            Self.asPostgres([
                Self.binDirectory + "/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", s.socketDirectory, "-p",
                "\(s.port)", "-d", "postgres", "-f", "-",
            ]), stdin: sql)
        // psql's errors do not echo the statement text, so the password cannot reach `out`.
        if code != 0 {
            throw Failure.step("creating role \(s.owner) and database \(s.database)", exitCode: code, output: out)
        }
    }
}

/// The instances this kubelet runs (pod uid → the server process).
final class CNPGInstances: @unchecked Sendable {
    // @unchecked: all state guarded by `lock`.
    static let shared = CNPGInstances()
    private let lock = NSLock()
    private var starting: Set<String> = []
    private var running: [String: Process] = [:]
    private var stopped: Set<String> = []

    func claim(_ uid: String) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        if starting.contains(uid) || running[uid] != nil || stopped.contains(uid) { return false }
        starting.insert(uid)
        return true
    }
    func release(_ uid: String) {
        lock.lock()
        starting.remove(uid)
        lock.unlock()
    }
    func started(_ uid: String, _ p: Process) {
        lock.lock()
        starting.remove(uid)
        running[uid] = p
        lock.unlock()
    }
    /// Whether the instance was stopped on purpose (its pod is gone).
    func exited(_ uid: String) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        running[uid] = nil
        return stopped.contains(uid)
    }
    /// Stops (SIGINT: PostgreSQL's fast shutdown) the instances whose pods are not in `present`.
    @discardableResult
    func stopAbsent(present: Set<String>) -> [Process] {
        lock.lock()
        let gone = running.filter { !present.contains($0.key) }
        for (uid, _) in gone { stopped.insert(uid) }
        lock.unlock()
        for (_, p) in gone where p.isRunning { kill(p.processIdentifier, SIGINT) }
        return Array(gone.values)
    }

    /// Stops every instance and waits up to `seconds` for them to exit.
    func stopAll(seconds: Double) {
        let all = stopAbsent(present: [])
        let deadline = Date().addingTimeInterval(seconds)
        while all.contains(where: \.isRunning), Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
    }
}
