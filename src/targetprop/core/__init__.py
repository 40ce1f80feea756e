"""The engine: layers and networks, the pure functions of target propagation
(targets, feedback objectives, the local update), the rule base class, the
learner and the diagnostics. It knows no rule family."""
