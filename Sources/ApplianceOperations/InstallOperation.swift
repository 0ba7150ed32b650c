import AppliancePlan

public enum InstallOperation {
    public static let kind = "install"
    public static func prepare(
        _ params: OperationParameters, session: OperationSession, io: OperationIO
    ) async throws -> PreparedOperation {
        throw OperationError.invalid("install is being built", hint: nil)
    }
}
