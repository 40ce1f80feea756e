"""Rule families: back-prop, the difference-target-propagation family,
Bengio (2014)'s auto-encoder-mediated rule and the generative stacks. Each
builds on the engine (:mod:`targetprop.core`) and the auto-encoder pieces
(:mod:`targetprop.autoencoders`), never on another family."""
