"""TO BE WRITTEN."""

from fastapi import APIRouter

router = APIRouter()
