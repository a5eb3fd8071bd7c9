"""What every layer needs and none owns: atomic writes, typed options, checkpoint files.

Imports flow one way, ``util`` -> data, text -> model -> train, adapt -> decode, score -> commands;
nothing here imports from the rest of the package.
"""
