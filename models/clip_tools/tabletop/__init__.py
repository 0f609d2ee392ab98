"""The default model's tools (the bundle itself is models/tabletop/): the synthetic scene
generator (`scenes`), the trainer (`train`), the evaluation-set writer (`make_eval`) and
the zero-shot evaluation (`evaluate`). models/tabletop/*.py are their command-line entry
points, as the bundle README names them."""
