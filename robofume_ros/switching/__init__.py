"""switching"""
