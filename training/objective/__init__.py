"""The objective: Hungarian matching, losses, the criterion and the track-query hand-over rules."""
