import ApplianceLabNode
import Foundation

exit(LabNodeDispatcher.main(CommandLine.arguments))
