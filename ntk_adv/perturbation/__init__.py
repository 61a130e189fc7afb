"""Perturbation learning: the protocol (:mod:`.protocol`, pure stages and whole cells) and its batched form
for the sweep engine (:mod:`.batch`)."""
