import ApplianceBundle
import ArgumentParser
import Foundation

struct BundleKeygen: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen", abstract: "Create an Ed25519 key pair for signing bundles.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "Directory for appliance-signing.key (mode 0600) and appliance-signing.pub.")
    var out: String

    @Flag(help: "Replace an existing key pair.")
    var force = false

    func run() async throws {
        let ctx = CommandContext.make(global, command: "bundle keygen")
        let key = try Ed25519Key.generate()
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let priv = (out as NSString).appendingPathComponent("appliance-signing.key")
        let pub = (out as NSString).appendingPathComponent("appliance-signing.pub")
        if !force, FileManager.default.fileExists(atPath: priv) || FileManager.default.fileExists(atPath: pub) {
            throw BundleError.destinationExists(path: priv)
        }
        try writeNew(priv, try key.privateKeyPEM(), mode: 0o600)
        try writeNew(pub, try key.publicKeyPEM(), mode: 0o644)
        ctx.output.print("private key: \(priv) (keep it offline; mode 0600)")
        ctx.output.print("public key:  \(pub) (give it to operators: --trust \(pub))")
        ctx.output.print("fingerprint: \(try key.fingerprint())")
    }

    /// Writes through a temporary file created with the final mode, then renames: never a moment with a
    /// readable private key or a half-written file.
    private func writeNew(_ path: String, _ data: Data, mode: mode_t) throws {
        let tmp = "\(path).tmp-\(getpid())"
        unlink(tmp)
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw BundleError.io(path: tmp, reason: String(cString: strerror(errno))) }
        let ok = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == data.count
        fsync(fd)
        close(fd)
        guard ok, rename(tmp, path) == 0 else {
            unlink(tmp)
            throw BundleError.io(path: path, reason: String(cString: strerror(errno)))
        }
    }
}
