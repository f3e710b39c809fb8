"""mAP beside the loss, as the frameworks' validators compute it.

- :mod:`yolodbg.evaluate.postprocess`: the validators' post-processing settings, without torch
  (each head family declares its own in :mod:`yolodbg.heads.families`);
- :mod:`yolodbg.evaluate.decode`: detections and NMS (each head family's inference decode lives
  with the family in :mod:`yolodbg.heads`, which uses these primitives; so this package's own
  ``__init__`` imports nothing);
- :mod:`yolodbg.evaluate.coco`: one bundle's detections matched with the ground truth by
  pycocotools' ``COCOeval``, kept slim per image;
- :mod:`yolodbg.evaluate.cocopool`: those matches pooled over a whole scan and accumulated, equal
  to one ``COCOeval`` over all images at once.
"""
