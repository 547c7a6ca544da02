"""The analytics web app under `/app/`: server-rendered pages over the analytics selectors."""
