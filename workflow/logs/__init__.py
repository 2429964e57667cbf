"""Drive logs in, frames out: ROS 1 bags, ROS 2 bags and MCAP read with rosbags."""
