import ApplianceBundle
import Foundation

/// The private directory (0700) where a support bundle's files are written, already redacted, before they are
/// packed; and the index being built. Nothing unredacted is ever written: bytes go from the source through a
/// `StreamRedactor` into these files.
public actor SupportStage {
    public nonisolated let root: String
    public nonisolated let rules: RedactionRules
    private var files: [SupportManifest.File] = []
    private var failures: [SupportManifest.Failure] = []
    private var nodes: [String: SupportManifest.Node] = [:]

    public init(rules: RedactionRules) throws(SupportError) {
        let base =
            FileManager.default.temporaryDirectory.path
            + "/appliance-support-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        guard mkdir(base, 0o700) == 0 else { throw .io(path: base, reason: String(cString: strerror(errno))) }
        root = base
        self.rules = rules
    }

    /// Opens the file `path` of the bundle for writing through a redactor.
    public nonisolated func open(_ path: String) throws(SupportError) -> RedactedFile {
        try RedactedFile(root: root, path: path, rules: rules)
    }

    public func record(_ file: SupportManifest.File) { files.append(file) }

    /// Drops the record of a file (one replaced by another attempt).
    public func forget(_ path: String) {
        files.removeAll { $0.path == path }
    }

    public func fail(source: String, what: String, reason: String) {
        failures.append(.init(source: source, what: what, reason: reason))
    }

    public func node(_ n: SupportManifest.Node) { nodes[n.name] = n }

    public func snapshot() -> (
        files: [SupportManifest.File], failures: [SupportManifest.Failure], nodes: [String: SupportManifest.Node]
    ) {
        (files.sorted { $0.path < $1.path }, failures, nodes)
    }

    /// Writes `manifest` and packs everything into `output` (a gzip-compressed tar, written beside it and renamed
    /// when complete).
    public func pack(manifest: SupportManifest, output: String) throws(SupportError) {
        let manifestData: Data
        do { manifestData = try manifest.encoded() } catch { throw .io(path: output, reason: "\(error)") }
        let partial = output + ".partial-\(getpid())"
        unlink(partial)
        do {
            let writer = try CompressedArchiveWriter(
                path: partial, mtime: Int(manifest.createdAt.timeIntervalSince1970))
            try writer.add(SupportManifest.fileName, data: manifestData)
            for f in manifest.files {
                try writer.add(f.path, file: root + "/" + f.path)
            }
            try writer.close()
        } catch {
            unlink(partial)
            throw .io(path: output, reason: "\(error)")
        }
        guard rename(partial, output) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(partial)
            throw .io(path: output, reason: reason)
        }
    }

    /// Removes the staging directory.
    public nonisolated func remove() { try? FileManager.default.removeItem(atPath: root) }
}

/// One file of the bundle being written: text in, redacted text out to the staging file.
///
/// Not thread-safe: one writer per file, used by one task.
public final class RedactedFile {
    public let path: String
    private let sink: FileSink
    private let redactor: StreamRedactor

    init(root: String, path: String, rules: RedactionRules) throws(SupportError) {
        self.path = path
        var dir = root
        for part in path.split(separator: "/").dropLast() {
            dir += "/" + part
            if mkdir(dir, 0o700) != 0 && errno != EEXIST {
                throw .io(path: dir, reason: String(cString: strerror(errno)))
            }
        }
        let full = root + "/" + path
        let fd = Glibc.open(full, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .io(path: full, reason: String(cString: strerror(errno))) }
        let sink = FileSink(fd: fd, path: path)
        self.sink = sink
        redactor = StreamRedactor(rules: rules) { text in try sink.write(text) }
    }

    public func write(_ bytes: [UInt8]) throws { try redactor.feed(bytes) }
    public func write(_ text: String) throws { try redactor.feed(Array(text.utf8)) }
    public func write(_ raw: UnsafeRawBufferPointer) throws { try redactor.feed(raw) }

    /// Flushes and closes; returns the bytes written and the redactions made.
    @discardableResult
    public func finish() throws -> (bytes: Int64, redactions: Int) {
        try redactor.finish()
        sink.close()
        return (sink.written, redactor.count)
    }

    /// Copies a local file through the redactor, 1 MiB at a time.
    public func copy(from file: String) throws {
        let src = Glibc.open(file, O_RDONLY | O_CLOEXEC)
        guard src >= 0 else { throw SupportError.io(path: file, reason: String(cString: strerror(errno))) }
        defer { Glibc.close(src) }
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buf.deallocate() }
        while true {
            let n = read(src, buf.baseAddress, buf.count)
            if n < 0 {
                if errno == EINTR { continue }
                throw SupportError.io(path: file, reason: String(cString: strerror(errno)))
            }
            if n == 0 { return }
            try redactor.feed(UnsafeRawBufferPointer(rebasing: buf[0..<n]))
        }
    }
}

/// The staging file's descriptor; closed by `close()` or on deinit.
final class FileSink {
    let fd: Int32
    let path: String
    private(set) var written: Int64 = 0
    private var closed = false

    init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    deinit { close() }

    func close() {
        guard !closed else { return }
        closed = true
        Glibc.close(fd)
    }

    func write(_ text: String) throws {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SupportError.io(path: path, reason: String(cString: strerror(errno)))
            }
            written += Int64(n)
            bytes = bytes.dropFirst(n)
        }
    }
}
