"""RoI heads and their parts (registered in MODELS)."""
from visdet.models.roi_heads.shared2fc_bbox_head import Shared2FCBBoxHead
from visdet.models.roi_heads.single_level_roi_extractor import SingleRoIExtractor
from visdet.models.roi_heads.standard_roi_head import StandardRoIHead, bbox2roi

__all__ = ["Shared2FCBBoxHead", "SingleRoIExtractor", "StandardRoIHead", "bbox2roi"]
