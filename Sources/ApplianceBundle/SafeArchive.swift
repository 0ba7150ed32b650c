import Foundation

/// A gzip-compressed tar written entry by entry through the product's archive writer (fixed owner and time,
/// regular files and directories only: no links, no absolute names). `appliance support-bundle` writes with it.
///
/// Owns one `ArchiveWriter`; not thread-safe (one writer, one task).
public final class CompressedArchiveWriter {
    private let writer: ArchiveWriter
    public let path: String

    public init(path: String, mtime: Int = 0) throws(BundleError) {
        writer = try ArchiveWriter(path: path, gzip: true, mtime: mtime)
        self.path = path
    }

    public func addDirectory(_ name: String) throws(BundleError) {
        try writer.addDirectory(try Self.checked(name))
    }

    public func add(_ name: String, data: Data) throws(BundleError) {
        try writer.add(try Self.checked(name), data: data)
    }

    /// Streams a file from disk into the entry `name` (1 MiB at a time).
    public func add(_ name: String, file: String) throws(BundleError) {
        var st = stat()
        guard lstat(file, &st) == 0 else { throw .io(path: file, reason: String(cString: strerror(errno))) }
        guard st.st_mode & S_IFMT == S_IFREG else { throw .io(path: file, reason: "not a regular file") }
        try writer.add(try Self.checked(name), file: file, expectedSize: Int64(st.st_size))
    }

    public func close() throws(BundleError) { try writer.close() }

    /// Names go in as plain relative paths; anything else is a bug of the caller, refused here.
    private static func checked(_ name: String) throws(BundleError) -> String {
        switch EntryPolicy.normalize(name) {
        case .accept(let n) where n == name: return n
        case .accept: throw .io(path: name, reason: "archive entry names must be normalized relative paths")
        case .refuse(let reason): throw .io(path: name, reason: "refused archive entry name: \(reason)")
        }
    }
}

/// One regular file of an archive read by `SafeArchive.forEachFile`; valid only inside the callback.
public final class SafeArchiveFile {
    public let name: String
    public let size: Int64
    private let reader: ArchiveReader

    init(name: String, size: Int64, reader: ArchiveReader) {
        self.name = name
        self.size = size
        self.reader = reader
    }

    /// The whole entry; refuses more than `limit` bytes.
    public func readAll(limit: Int) throws(BundleError) -> Data { try reader.readAll(limit: limit) }

    /// Streams the entry in chunks of up to 1 MiB (a chunk is valid only during `body`).
    public func readChunks(_ body: (UnsafeRawBufferPointer) throws(BundleError) -> Void) throws(BundleError) {
        try reader.readData(body)
    }
}

/// Reads an archive that may come from anywhere (another site's support bundle) without trusting it: every
/// entry passes the product's `EntryPolicy` (no absolute paths, no `..`, no links, no device files, no
/// duplicate names, bounded sizes) before any byte is used, and nothing is written to disk.
public enum SafeArchive {
    /// Checks every entry; throws `BundleError.unsafeEntries` listing each refused one. Returns the accepted
    /// regular files and their sizes, in archive order.
    @discardableResult
    public static func check(archive: String, maxEntrySize: Int64 = 1 << 34) throws(BundleError) -> [(
        name: String, size: Int64
    )] {
        let reader = try ArchiveReader(path: archive, formats: .anyArchive)
        var policy = EntryPolicy(allowSymlinks: false, allowHardlinks: false, maxEntrySize: maxEntrySize)
        var refused: [BundleError.RefusedEntry] = []
        var files: [(name: String, size: Int64)] = []
        scan: while let e = try reader.next() {
            switch policy.check(e, archiveSize: nil) {
            case .refuse(let reason):
                refused.append(.init(name: e.rawName, reason: reason))
                guard (try? reader.skip()) != nil else { break scan }
                continue
            case .accept(let name):
                if e.kind == .file { files.append((name, e.size)) }
            }
            try reader.skip()
        }
        if !refused.isEmpty { throw .unsafeEntries(path: archive, entries: refused) }
        return files
    }

    /// Checks the whole archive first (`check`), then calls `body` for each regular file in archive order.
    public static func forEachFile(
        archive: String, maxEntrySize: Int64 = 1 << 34, _ body: (SafeArchiveFile) throws -> Void
    ) throws {
        try check(archive: archive, maxEntrySize: maxEntrySize)
        let reader = try ArchiveReader(path: archive, formats: .anyArchive)
        var policy = EntryPolicy(allowSymlinks: false, allowHardlinks: false, maxEntrySize: maxEntrySize)
        while let e = try reader.next() {
            guard case .accept(let name) = policy.check(e, archiveSize: nil) else {
                throw BundleError.unsafeEntries(
                    path: archive, entries: [.init(name: e.rawName, reason: "changed while reading")])
            }
            if e.kind == .file {
                try body(SafeArchiveFile(name: name, size: e.size, reader: reader))
            } else {
                try reader.skip()
            }
        }
    }
}
