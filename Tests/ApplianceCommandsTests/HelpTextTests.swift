import ArgumentParser
import Testing

@testable import ApplianceCommands

@Suite struct HelpTextTests {
    /// Source line breaks inside a paragraph are joined; blank lines, options and exit codes start lines.
    @Test func paragraphsAreJoinedAndListsKept() {
        let text = Format.help(
            """
            One sentence that the source
            breaks in two.

            Second paragraph, also
            broken.
            --watch repeats, and
            goes on.
            - a list item
            Exit codes: 0 fine;
            1 not.

            Kinds:
              power-off: stop it
              heal: plug it back
            After the table.
            """)
        #expect(
            text == """
                One sentence that the source breaks in two.

                Second paragraph, also broken.
                --watch repeats, and goes on.
                - a list item
                Exit codes: 0 fine; 1 not.

                Kinds:
                  power-off: stop it
                  heal: plug it back
                After the table.
                """)
    }

    /// Every command's help is shown without the source's mid-sentence breaks.
    @Test func everyCommandsDiscussionIsFlowed() {
        var commands: [any ParsableCommand.Type] = [ApplianceCommand.self]
        var seen = 0
        while let c = commands.popLast() {
            commands += c.configuration.subcommands
            let d = c.configuration.discussion
            guard !d.isEmpty else { continue }
            seen += 1
            #expect(Format.help(d) == d, "\(c.configuration.commandName ?? "\(c)")")
        }
        #expect(seen >= 20)
    }
}
