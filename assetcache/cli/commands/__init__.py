"""The commands, one module per group of them: each command is one library call plus its
output. They import the CLI's plumbing (app, exits, options, output), never the group."""
