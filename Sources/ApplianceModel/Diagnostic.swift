/// A place in a text file, 1-based, as editors and compilers print it.
public struct SourceLocation: Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    public var description: String { "\(file):\(line):\(column)" }
}

/// One problem found in an input file, with where it is when that is known.
public struct Diagnostic: Sendable, Hashable, CustomStringConvertible {
    public var location: SourceLocation?
    public var message: String

    public init(_ message: String, at location: SourceLocation?) {
        self.message = message
        self.location = location
    }

    public var description: String {
        guard let location else { return message }
        return "\(location): \(message)"
    }
}

/// Every problem found in one input, reported together so the operator fixes them in one pass.
public struct DiagnosticsError: Error, Sendable, CustomStringConvertible {
    /// What the input was ("bundle spec", "site file", "manifest").
    public var subject: String
    public var diagnostics: [Diagnostic]

    public init(subject: String, diagnostics: [Diagnostic]) {
        self.subject = subject
        self.diagnostics = diagnostics
    }

    public var description: String {
        let head = diagnostics.count == 1 ? "invalid \(subject)" : "invalid \(subject) (\(diagnostics.count) problems)"
        return ([head] + diagnostics.map { "  \($0)" }).joined(separator: "\n")
    }
}

/// A value that takes no part in its owner's equality: where a field was written. A site read back from
/// its own YAML, or built in code, equals the one loaded from the file.
@propertyWrapper
public struct EqualityIgnored<Value: Sendable>: Sendable, Equatable {
    public var wrappedValue: Value
    public init(wrappedValue: Value) { self.wrappedValue = wrappedValue }
    public static func == (a: Self, b: Self) -> Bool { true }
}
