"""engine/display"""
