"""selfloop.model"""
