"""Label assigners: predictions + targets -> which anchor learns which ground truth."""
