internal import CArchive
import Foundation

/// Writes a tar (optionally gzip-compressed) through libarchive, entry by entry, streaming file contents.
///
/// Owns one `struct archive *`, freed in deinit. Not thread-safe. Entries get fixed owner (0:0) and a fixed
/// modification time so equal inputs give byte-identical archives.
final class ArchiveWriter {
    private let handle: OpaquePointer
    let path: String
    let mtime: Int
    private var closed = false

    init(path: String, gzip: Bool = false, mtime: Int = 0) throws(BundleError) {
        guard let a = archive_write_new() else { throw .io(path: path, reason: "out of memory") }
        handle = a
        self.path = path
        self.mtime = mtime
        archive_write_set_format_pax_restricted(a)
        if gzip {
            archive_write_add_filter_gzip(a)
            archive_write_set_filter_option(a, "gzip", "timestamp", nil)
        }
        archive_write_set_bytes_per_block(a, 1 << 16)
        archive_write_set_bytes_in_last_block(a, 1)
        if archive_write_open_filename(a, path) != carchive_ok() {
            // deinit runs (all stored properties are set) and frees the handle.
            closed = true
            let reason = Self.errorString(a)
            throw .io(path: path, reason: reason)
        }
    }

    deinit {
        if !closed { archive_write_close(handle) }
        archive_write_free(handle)
    }

    private static func errorString(_ a: OpaquePointer) -> String {
        archive_error_string(a).map { String(cString: $0) } ?? "unknown libarchive error (errno \(archive_errno(a)))"
    }

    private func header(name: String, size: Int64, directory: Bool, mode: UInt32) throws(BundleError) {
        guard let entry = archive_entry_new() else { throw .io(path: path, reason: "out of memory") }
        defer { archive_entry_free(entry) }
        archive_entry_set_pathname(entry, name)
        archive_entry_set_filetype(entry, directory ? carchive_ae_ifdir() : carchive_ae_ifreg())
        archive_entry_set_perm(entry, mode_t(mode))
        archive_entry_set_size(entry, directory ? 0 : size)
        archive_entry_set_mtime(entry, time_t(mtime), 0)
        archive_entry_set_uid(entry, 0)
        archive_entry_set_gid(entry, 0)
        archive_entry_set_uname(entry, "root")
        archive_entry_set_gname(entry, "root")
        if archive_write_header(handle, entry) != carchive_ok() {
            throw .io(path: path, reason: "writing header of \(name): \(Self.errorString(handle))")
        }
    }

    func addDirectory(_ name: String, mode: UInt32 = 0o755) throws(BundleError) {
        try header(name: name, size: 0, directory: true, mode: mode)
    }

    func add(_ name: String, data: Data, mode: UInt32 = 0o644) throws(BundleError) {
        try header(name: name, size: Int64(data.count), directory: false, mode: mode)
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: max(data.count, 1), alignment: 16)
        defer { buf.deallocate() }
        data.copyBytes(to: buf)
        try write(UnsafeRawBufferPointer(rebasing: buf[0..<data.count]))
    }

    /// Adds a file's contents, which must still be `expectedSize` bytes long (a file changing under the
    /// build is refused rather than packed inconsistently).
    func add(_ name: String, file: String, expectedSize: Int64, mode: UInt32 = 0o644) throws(BundleError) {
        var total: Int64 = 0
        try FileChunks.forEach(
            path: file,
            opened: { () throws(BundleError) in
                try header(name: name, size: expectedSize, directory: false, mode: mode)
            }
        ) { (chunk) throws(BundleError) in
            total += Int64(chunk.count)
            guard total <= expectedSize else {
                throw .io(path: file, reason: "the file changed size while the bundle was being written")
            }
            try write(chunk)
        }
        if total != expectedSize {
            throw .io(path: file, reason: "the file changed size while the bundle was being written")
        }
    }

    private func write(_ raw: UnsafeRawBufferPointer) throws(BundleError) {
        var offset = 0
        while offset < raw.count {
            let n = archive_write_data(handle, raw.baseAddress?.advanced(by: offset), raw.count - offset)
            if n < 0 { throw .io(path: path, reason: Self.errorString(handle)) }
            if n == 0 { throw .io(path: path, reason: "short write") }
            offset += n
        }
    }

    func close() throws(BundleError) {
        closed = true
        if archive_write_close(handle) != carchive_ok() { throw .io(path: path, reason: Self.errorString(handle)) }
    }
}

/// Packs a directory tree into a deterministic archive (sorted names, fixed owner and time).
/// Symbolic links and special files are refused: they do not belong in artifacts.
enum DirectoryPacker {
    static func pack(directory: String, into output: String, prefix: String = "", gzip: Bool = false)
        throws(BundleError)
    {
        let writer = try ArchiveWriter(path: output, gzip: gzip)
        var stack = [""]
        var items: [(String, Bool, Int64, UInt32)] = []
        while let rel = stack.popLast() {
            let full = rel.isEmpty ? directory : directory + "/" + rel
            let names: [String]
            do {
                names = try FileManager.default.contentsOfDirectory(atPath: full).sorted()
            } catch {
                throw .io(path: full, reason: error.localizedDescription)
            }
            for name in names.reversed() {
                let childRel = rel.isEmpty ? name : rel + "/" + name
                var st = stat()
                guard lstat(directory + "/" + childRel, &st) == 0 else {
                    throw .io(path: directory + "/" + childRel, reason: String(cString: strerror(errno)))
                }
                switch st.st_mode & S_IFMT {
                case S_IFDIR:
                    items.append((childRel, true, 0, 0o755))
                    stack.append(childRel)
                case S_IFREG:
                    items.append((childRel, false, Int64(st.st_size), (st.st_mode & 0o111) != 0 ? 0o755 : 0o644))
                default:
                    throw .io(
                        path: directory + "/" + childRel, reason: "only regular files and directories can be packed")
                }
            }
        }
        items.sort { $0.0 < $1.0 }
        if !prefix.isEmpty { try writer.addDirectory(prefix) }
        for (rel, isDir, size, mode) in items {
            let name = prefix.isEmpty ? rel : prefix + "/" + rel
            if isDir {
                try writer.addDirectory(name)
            } else {
                try writer.add(name, file: directory + "/" + rel, expectedSize: size, mode: mode)
            }
        }
        try writer.close()
    }
}
