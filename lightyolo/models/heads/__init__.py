"""Detection heads, one module per `conf/head/*.yaml` (docs/design.md, "Models").

The head contract (checked by `build_detector`): a head is an nn.Module built as
`cls(nc=, in_channels=<the neck's out_channels>, strides=<the neck's strides>, **yaml keys)`;
it exposes `nc` and a `stride` buffer (one float per level), and names its training loss
in the class attribute `loss` (the dotted path of a class under `lightyolo.train`, or a
user's own, built by `lightyolo.train.losses.build_loss`). In training mode it returns what
that loss takes; in eval mode `(decoded, raw)`, where `decoded` is (B, N, 5 + nc) with an
objectness column (`v5`) or (B, N, 4 + nc) without one (`v8`): box centre x, centre y, width,
height in input pixels, then the scores after the sigmoid; the class attribute `objectness`
says which. The evaluator, NMS, export and bench read nothing else.

- `v5`: YOLOv5's anchor-based Detect (`heads/v5.py`), the default; YOLOv5's loss.
- `v8`: YOLOv8's anchor-free decoupled head with Distribution Focal Loss (`heads/v8.py`);
  the task-aligned assigner and the v8 loss (`lightyolo/train/anchor_free_loss.py`).
"""
