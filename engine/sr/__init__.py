"""engine/sr"""
