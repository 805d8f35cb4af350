"""The option lists the CLI, the nodes and the core share, defined once (plain tuples: importing this is free)."""

FIT_MODES = ("letterbox", "stretch")                            # how an image is brought to the processing square
POLARITIES = ("auto", "white_on_black", "black_on_white")       # how a line drawing is drawn
PRECISIONS = ("auto", "fp16", "bf16", "fp32")                   # the compute precision
MULTI_REFERENCE_MODES = ("tile", "bank")                       # how several references are combined
FINISH_GAP = 8  # finishing: gaps in lines up to this many page pixels are closed (mn_core.finish)
PRIOR_STRENGTH = 0.8  # finishing: weight of a colour prior's a*b* (inkn'hue's interpolation weight)
