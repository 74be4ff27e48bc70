"""A few sentences of plain prose: the `orig/` of judge tests that build their n-gram reference from it."""

HARBOR = [
    "The harbor was quiet in the early morning, and the fishing boats rocked gently at their moorings.",
    "A gull circled over the market square while the baker opened his shutters and set out fresh bread.",
    "The old lighthouse keeper climbed the stairs each evening to light the lamp before the sun went down.",
    "Children ran along the beach, and their parents watched them from the benches by the sea wall.",
    "In the afternoon the wind turned, and the boats came back to the harbor before the storm arrived.",
    "The market closed at noon, and the traders packed their stalls and carried the baskets home.",
]
