"""Database: two tables (sessions, messages) and the few operations the API needs.

Plain SQLAlchemy Core/ORM in the 1.4 "future" style, so the same code runs on SQLAlchemy 2.x.
The functions are synchronous (psycopg2); the async API calls them through a thread pool.
"""
import logging
import time
import uuid
from datetime import datetime, timedelta, timezone

from sqlalchemy import (BigInteger, Column, DateTime, ForeignKey, String, Text, create_engine, delete, func,
                        text)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, declarative_base, relationship

log = logging.getLogger("agent_service.db")
Base = declarative_base()


class ChatSession(Base):
    __tablename__ = "sessions"
    id = Column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    created_at = Column(DateTime(timezone=True), nullable=False, server_default=func.now())
    updated_at = Column(DateTime(timezone=True), nullable=False, server_default=func.now(), index=True)
    # The database deletes a session's messages with it (ON DELETE CASCADE), so the cleanup is one DELETE.
    messages = relationship("Message", order_by="Message.id", cascade="all, delete-orphan",
                            passive_deletes=True)


class Message(Base):
    __tablename__ = "messages"
    id = Column(BigInteger, primary_key=True)  # insertion order = conversation order
    session_id = Column(UUID(as_uuid=True), ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False,
                        index=True)
    role = Column(String(16), nullable=False)  # "user" or "assistant"
    content = Column(Text, nullable=False)
    created_at = Column(DateTime(timezone=True), nullable=False, server_default=func.now())


class SessionNotFound(Exception):
    pass


def make_engine(url):
    # pool_pre_ping: a connection that died (database restart) is replaced instead of failing a request.
    return create_engine(url, future=True, pool_pre_ping=True, connect_args={"connect_timeout": 5})


def safe_url(engine):
    return engine.url.render_as_string(hide_password=True)


def create_tables(engine, wait_seconds=60):
    """Create the tables, retrying while the database is not up yet (it may start after this container)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            Base.metadata.create_all(engine)
            return
        except OperationalError as e:
            if time.monotonic() > deadline:
                raise
            # The first line of the driver's message says why (refused, auth failed); it has no password.
            log.warning("database %s not ready, retrying: %s", safe_url(engine), str(e.orig).strip().splitlines()[0])
            time.sleep(2)


def ping(engine):
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def history(engine, session_id):
    """The messages of a session as [{"role", "content"}], or [] for a new conversation (session_id None)."""
    if session_id is None:
        return []
    with Session(engine) as s:
        chat = s.get(ChatSession, session_id)
        if chat is None:
            raise SessionNotFound(str(session_id))
        return [{"role": m.role, "content": m.content} for m in chat.messages]


def save_turn(engine, session_id, user_message, reply):
    """Store one exchange (creating the session if it is new) in one transaction."""
    with Session(engine) as s, s.begin():
        chat = s.get(ChatSession, session_id)
        if chat is None:
            chat = ChatSession(id=session_id)
            s.add(chat)
        else:
            chat.updated_at = func.now()
        chat.messages.append(Message(role="user", content=user_message))
        chat.messages.append(Message(role="assistant", content=reply))


def session_messages(engine, session_id):
    with Session(engine) as s:
        chat = s.get(ChatSession, session_id)
        if chat is None:
            raise SessionNotFound(str(session_id))
        return {
            "session_id": str(chat.id),
            "updated_at": chat.updated_at.isoformat(),
            "messages": [{"role": m.role, "content": m.content, "created_at": m.created_at.isoformat()}
                         for m in chat.messages],
        }


def delete_old_sessions(engine, max_age_days):
    """Delete sessions not updated for max_age_days (their messages go with them); return how many."""
    cutoff = datetime.now(timezone.utc) - timedelta(days=max_age_days)
    with Session(engine) as s, s.begin():
        result = s.execute(delete(ChatSession).where(ChatSession.updated_at < cutoff))
    log.info("cleanup: deleted %d session(s) not updated since %s", result.rowcount, cutoff.isoformat())
    return result.rowcount
