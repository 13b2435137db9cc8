"""The vocabulary conventions every part of the project shares.

Token ids 0-3 are reserved in every vocabulary (source, target, joint, the
encoder and language-model families): padding, unknown, start and end.
Tokenizers put these four pieces first; layers treat id 0 as padding; data
pipelines put the start and end ids around sentences; decoding starts from
`START_ID` and stops at `END_ID`; exported models read and write the same ids.
This module imports nothing, so any module (layers, data, decoding, export)
may import it.
"""

PAD_ID = 0
UNKNOWN_ID = 1
START_ID = 2
END_ID = 3

# The pieces of the reserved ids, in id order (WordPiece vocabularies start with them).
RESERVED_TOKENS = ("[PAD]", "[UNK]", "[START]", "[END]")
